# Tests of the row rules (rows.rego) with concrete rows: each test gives a
# session and one row as input, as the proxy's SQL condition would see it.
package dbal_rows_test

import data.dbal

sess(role, user_id) := {"user": "x", "role": role, "claims": {"user_id": user_id}}

alice := sess("user", "u_alice")

admin := sess("admin", "u_bob")

row(id, role) := {"id": id, "role": role, "email": "x@example.com"}

# --- role user: its own row only -------------------------------------------

test_user_sees_own_row if {
	dbal.rows["public.users"].select with input as {"session": alice, "row": row("u_alice", "user")}
}

test_user_does_not_see_other_rows if {
	not dbal.rows["public.users"].select with input as {"session": alice, "row": row("u_bob", "admin")}
	not dbal.rows["public.users"].select with input as {"session": alice, "row": row("U_ALICE", "user")}
	not dbal.rows["public.users"].select with input as {"session": alice, "row": row(null, "user")}
}

test_user_updates_own_row_only if {
	dbal.rows["public.users"].update with input as {"session": alice, "row": row("u_alice", "user")}
	not dbal.rows["public.users"].update with input as {"session": alice, "row": row("u_carol", "god")}
}

test_user_writes_own_row_only if {
	dbal.new_rows["public.users"].update with input as {"session": alice, "row": row("u_alice", "user")}
	not dbal.new_rows["public.users"].update with input as {"session": alice, "row": row("u_dave", "user")}
}

test_user_deletes_and_inserts_no_row if {
	not dbal.rows["public.users"].delete with input as {"session": alice, "row": row("u_alice", "user")}
	not dbal.new_rows["public.users"].insert with input as {"session": alice, "row": row("u_alice", "user")}
}

test_user_without_claim_sees_nothing if {
	no_claim := {"user": "x", "role": "user", "claims": {}}
	not dbal.rows["public.users"].select with input as {"session": no_claim, "row": row("u_alice", "user")}
	not dbal.rows["public.users"].select with input as {"session": no_claim, "row": {"id": null}}
}

# --- role admin: every row, but never writes a role above admin --------------

test_admin_sees_every_row if {
	every r in [row("u_alice", "user"), row("u_bob", "admin"), row("u_carol", "god"), row("u_dave", "supergod"), row("u_x", null)] {
		dbal.rows["public.users"].select with input as {"session": admin, "row": r}
	}
}

test_admin_changes_user_and_admin_rows if {
	every r in [row("u_alice", "user"), row("u_bob", "admin")] {
		dbal.rows["public.users"].update with input as {"session": admin, "row": r}
		dbal.rows["public.users"].delete with input as {"session": admin, "row": r}
	}
}

# A god or supergod row is out of an admin's reach: an UPDATE (even one that
# would demote it to "user", which new_rows allows) or DELETE of it changes
# no row, as under PostgreSQL's RLS USING.
test_admin_cannot_change_god_or_supergod_rows if {
	every r in [row("u_carol", "god"), row("u_dave", "supergod"), row("u_x", "root"), row("u_x", null)] {
		not dbal.rows["public.users"].update with input as {"session": admin, "row": r}
		not dbal.rows["public.users"].delete with input as {"session": admin, "row": r}
	}
}

test_admin_writes_user_and_admin_rows if {
	every role in ["user", "admin"] {
		dbal.new_rows["public.users"].insert with input as {"session": admin, "row": row("u_new", role)}
		dbal.new_rows["public.users"].update with input as {"session": admin, "row": row("u_new", role)}
	}
}

test_admin_cannot_write_god_or_supergod if {
	every role in ["god", "supergod", "root", null] {
		not dbal.new_rows["public.users"].insert with input as {"session": admin, "row": row("u_new", role)}
		not dbal.new_rows["public.users"].update with input as {"session": admin, "row": row("u_new", role)}
	}
}

# --- god, supergod, migrator: every row ---------------------------------------

test_unrestricted_roles if {
	every role in ["god", "supergod", "migrator"] {
		s := sess(role, "u_x")
		r := row("u_dave", "supergod")
		dbal.rows["public.users"].select with input as {"session": s, "row": r}
		dbal.rows["public.users"].update with input as {"session": s, "row": r}
		dbal.rows["public.users"].delete with input as {"session": s, "row": r}
		dbal.new_rows["public.users"].insert with input as {"session": s, "row": r}
		dbal.new_rows["public.users"].update with input as {"session": s, "row": r}
	}
}

# --- anyone else: no row --------------------------------------------------------

test_unknown_roles_get_no_rows if {
	every role in ["", "guest", "User"] {
		s := sess(role, "u_alice")
		not dbal.rows["public.users"].select with input as {"session": s, "row": row("u_alice", "user")}
		not dbal.new_rows["public.users"].insert with input as {"session": s, "row": row("u_alice", "user")}
	}
}

test_declared_columns if {
	dbal.row_columns["public.users"] == {"id", "role"}
}
