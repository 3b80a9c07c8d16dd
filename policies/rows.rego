# Row rules: which rows of a table a session may read and change, and which
# rows it may write, over `input.row` (one row of the table) and
# `input.session` (the principal). See README.md, "Row rules in Rego".
#
#   rows["schema.table"].select      a row reads may see
#   rows["schema.table"].update      a row UPDATE may change
#   rows["schema.table"].delete      a row DELETE may remove
#   new_rows["schema.table"].insert  a row INSERT may write
#   new_rows["schema.table"].update  what UPDATE may turn a row into
#
# A table with any row rule is protected: an operation whose rule is not
# defined for a session allows it no row. The proxy turns each rule into an
# SQL condition once per policy version, table and session (OPA partial
# evaluation with input.row unknown), with every value passed as an argument.
#
# The operation level (may role "user" update users at all?) is decided in
# dbal.rego; these rules only say which rows.
package dbal

# The columns of each protected table that row rules may use; a rule that
# names another column refuses the whole policy set at load.
row_columns["public.users"] := {"id", "role"}

# Roles whose row rules allow every row.
every_row if input.session.role in {"god", "supergod", "migrator"}

# users: role "user" sees and updates only its own row (id = its user_id
# claim); admins see every row but update and delete only rows whose role is
# user or admin, and may not write a role above admin: they cannot make
# anyone god or supergod, nor change or remove a row that already is one
# (an UPDATE that would demote it, or a DELETE, finds no row to change).

rows["public.users"].select if every_row

rows["public.users"].select if input.session.role == "admin"

rows["public.users"].select if {
	input.session.role == "user"
	input.row.id == input.session.claims.user_id
}

rows["public.users"].update if every_row

rows["public.users"].update if {
	input.session.role == "admin"
	input.row.role in {"user", "admin"}
}

rows["public.users"].update if {
	input.session.role == "user"
	input.row.id == input.session.claims.user_id
}

rows["public.users"].delete if every_row

rows["public.users"].delete if {
	input.session.role == "admin"
	input.row.role in {"user", "admin"}
}

new_rows["public.users"].insert if every_row

new_rows["public.users"].insert if {
	input.session.role == "admin"
	input.row.role in {"user", "admin"}
}

new_rows["public.users"].update if every_row

new_rows["public.users"].update if {
	input.session.role == "admin"
	input.row.role in {"user", "admin"}
}

new_rows["public.users"].update if {
	input.session.role == "user"
	input.row.id == input.session.claims.user_id
}
