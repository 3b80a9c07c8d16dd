# dbalproxy's shipped policy: the seed's role matrix (matrix.rego) over the
# demo schema, plus the statement-level rules every deployment wants.
#
# Entry point: data.dbal.decision, an object (see README.md):
#   allow (bool), reason, rule, filters, checks, columns, timeout_ms, max_rows.
#
# How a statement is decided:
#   1. Every rule below that objects adds an entry to `violations`, a tuple
#      [category, index, index, rule name, reason]. The categories are
#      0 unknown role, 1 statement-level (ALTER SYSTEM, flags, settings, DCL,
#      DO/CALL, DDL, unknown classes, other utility), 2 functions (see
#      functions.rego: only functions known to be safe), 3 tables; the
#      indexes are the positions of the offending function, table or access
#      kind in the input, so the smallest tuple names the FIRST offender.
#   2. No violation: allow, with the role's limits and row rules. An allowed
#      decision carries every key; {} and 0 mean none.
#
# The rules read input fields directly and test the cheapest, most selective
# condition first (OPA indexes `input.x == "constant"` conditions, so a rule
# about DCL is not even evaluated for a SELECT): a decision is evaluated for
# every new statement and principal, so it must stay fast.
package dbal

# ---------------------------------------------------------------------------
# The decision

default decision := {"allow": false, "reason": "denied: the policy reached no decision", "rule": "default"}

decision := {"allow": false, "reason": v[4], "rule": v[3]} if {
	count(violations) > 0
	v := sort(violations)[0]
} else := {
	"allow": true,
	"rule": allowed[0],
	"reason": allowed[1],
	"timeout_ms": object.get(limits, [role, "timeout_ms"], 0),
	"max_rows": object.get(limits, [role, "max_rows"], 0),
	"filters": row_rules.filters,
	"checks": row_rules.checks,
	"columns": row_rules.columns,
}

# allowed is [rule, reason] for a statement without violations.
allowed := ["supergod", sprintf("allowed: %s may run anything", [role_label])] if {
	input.session.role == "supergod"
} else := ["transaction", sprintf("allowed: transaction control (%s) is open to every session", [command_label])] if {
	input.statement.class == "transaction"
} else := ["ddl", sprintf("allowed: %s may run %s (DDL)", [role_label, command_label])] if {
	input.statement.class == "ddl"
} else := ["table_access", table_summary] if {
	count(input.statement.tables) > 0
} else := ["utility", sprintf("allowed: %s may run %s", [role_label, command_label])] if {
	input.statement.class == "utility"
} else := ["functions", sprintf("allowed: %s may run %s (it touches no table; it calls %s, each known to be safe)", [role_label, command_label, called_functions])] if {
	count(input.statement.functions) > 0
} else := ["no_tables", sprintf("allowed: %s may run %s (it touches no table and calls no function)", [role_label, command_label])]

# called_functions names the functions a statement calls, for reasons.
called_functions := concat(", ", sort({n | some f in input.statement.functions; n := function_label(f)}))

# table_summary names the first table, e.g.
# `allowed: role "admin" may select public.users and 1 more table`.
table_summary := sprintf("allowed: role %q may %s %s%s", [role, concat("/", access_of(t)), qname(t), more_tables]) if {
	t := input.statement.tables[0]
}

more_tables := "" if {
	count(input.statement.tables) == 1
} else := " and 1 more table" if {
	count(input.statement.tables) == 2
} else := sprintf(" and %d more tables", [count(input.statement.tables) - 1])

# row_rules are the SQL-form filters and checks and the column rules of the
# statement's tables, for the rewrite stage (always all three keys, {} for
# none). Which rows a role may see and write is said in Rego, in rows.rego;
# the proxy adds those conditions to the decision's filters and checks. What
# stays here:
#   - role "user" may not change the role or id of its own row.
row_rules := {
	"filters": {},
	"checks": {},
	"columns": {"public.users": {"deny_write": ["role", "id"]}},
} if {
	input.session.role == "user"
	touches_users
} else := {"filters": {}, "checks": {}, "columns": {}}

touches_users if {
	some t in input.statement.tables
	t.name == "users"
	t.schema in {"", "public"}
}

# ---------------------------------------------------------------------------
# Violations

# 0: a session without a known role may run only transaction control and a
# few harmless commands.
violations contains [0, 0, 0, "unknown_role", msg] if {
	not role_known
	not harmless
	msg := sprintf("%s: only transaction control and SET, RESET, SHOW, DISCARD or DEALLOCATE are allowed, not %s", [unknown_label, command_label])
}

harmless if input.statement.class == "transaction"

harmless if command_word in harmless_words

# 1: statement-level rules. SET/RESET ROLE and SESSION AUTHORIZATION are dcl
# too; their flags come first so that the reason names them.
violations contains [1, 0, 0, "alter_system", msg] if {
	input.statement.command == "ALTER SYSTEM"
	not_supergod
	msg := sprintf("%s may not run ALTER SYSTEM: it changes the server's configuration (supergod only)", [role_label])
}

violations contains [1, 1, i, flag, msg] if {
	some i, flag in input.statement.flags
	why := denied_flags[flag]
	not_supergod
	msg := sprintf("%s may not run %s: %s (supergod only)", [role_label, command_label, why])
}

violations contains [1, 2, 0, flag, msg] if {
	input.statement.command == "SET"
	flag := denied_settings[lower(input.statement.setting.name)]
	not_supergod
	msg := sprintf("%s may not run %s: %s (supergod only)", [role_label, command_label, denied_flags[flag]])
}

# set_config can change what SET can: the same settings are denied, and so
# is a set_config whose setting is not a constant ("?").
violations contains [1, 2, 1, flag, msg] if {
	some name in input.statement.configs
	flag := denied_settings[name]
	not_supergod
	msg := sprintf("%s may not call set_config(%q, ...): %s (supergod only)", [role_label, name, denied_flags[flag]])
}

violations contains [1, 2, 2, "set_config", msg] if {
	"?" in input.statement.configs
	not_supergod
	msg := sprintf("%s may not call set_config with a setting name that is not a constant: the proxy cannot tell which setting it changes (supergod only)", [role_label])
}

violations contains [1, 3, 0, "dcl", msg] if {
	input.statement.class == "dcl"
	not_supergod
	msg := sprintf("%s may not run %s: privilege statements (GRANT, REVOKE, roles) are for supergod only", [role_label, command_label])
}

violations contains [1, 4, 0, "code", msg] if {
	input.statement.command == "DO"
	not_supergod
	msg := sprintf("%s may not run DO: it runs arbitrary code on the server (supergod only)", [role_label])
}

violations contains [1, 4, 0, "code", msg] if {
	input.statement.command == "CALL"
	not_supergod
	msg := sprintf("%s may not run CALL: it runs arbitrary code on the server (supergod only)", [role_label])
}

violations contains [1, 5, 0, "ddl", msg] if {
	input.statement.class == "ddl"
	not role in {"supergod", "migrator"}
	msg := sprintf("%s may not run %s: schema changes (DDL) are for supergod and migrator only", [role_label, command_label])
}

violations contains [1, 6, 0, "class", msg] if {
	not class in {"read", "write", "transaction", "utility", "ddl", "dcl"}
	not_supergod
	msg := sprintf("%s may not run %s: statements of class %q are for supergod only", [role_label, command_label, class])
}

violations contains [1, 7, 0, "utility", msg] if {
	input.statement.class == "utility"
	not command_word in utility_words
	not command_word in {"DO", "CALL"}
	not_supergod
	msg := sprintf("%s may not run %s (supergod only)", [role_label, command_label])
}

# 2: functions: see functions.rego.

# 3: every table must be permitted for every access kind. A table the parser
# gave no access kind is "use", which only a "*" permission covers.
violations contains [3, i, j, "table_access", msg] if {
	some i, t in input.statement.tables
	some j, kind in t.access
	not table_permits(t, kind)
	msg := sprintf("%s may not %s %s", [role_label, verb(kind), qname(t)])
}

violations contains [3, i, 0, "table_access", msg] if {
	some i, t in input.statement.tables
	not has_access(t)
	not table_permits(t, "use")
	msg := sprintf("%s may not use %s", [role_label, qname(t)])
}

violations contains [3, i, 1000, "user_id_claim", msg] if {
	input.session.role == "user"
	not valid_user_id
	some i, t in input.statement.tables
	t.name == "users"
	t.schema in {"", "public"}
	msg := sprintf("%s needs a user_id claim to use public.users: it may see only its own row", [role_label])
}

valid_user_id if {
	id := input.session.claims.user_id
	is_string(id)
	id != ""
}

valid_user_id if is_number(input.session.claims.user_id)

# table_permits: supergod may do anything; every known role reads the
# catalogs; migrator may do anything else; the others what permissions
# says, for public tables only.
table_permits(_, _) if input.session.role == "supergod"

table_permits(t, kind) if {
	t.schema in {"", "public"}
	kind in role_permissions[t.name]
}

table_permits(t, _) if {
	t.schema in {"", "public"}
	"*" in role_permissions[t.name]
}

table_permits(t, "select") if {
	role_known
	is_catalog(t)
	not qname(t) in statistics_catalogs
}

table_permits(t, _) if {
	input.session.role == "migrator"
	not is_catalog(t)
}

role_permissions := object.get(permissions, role, {})

# An unqualified table (schema "") is in public, except pg_* names, which
# PostgreSQL finds in pg_catalog (it is always searched first).
is_catalog(t) if t.schema in catalog_schemas

is_catalog(t) if {
	t.schema == ""
	startswith(t.name, "pg_")
}

qname(t) := concat(".", ["public", t.name]) if {
	t.schema == ""
	not startswith(t.name, "pg_")
} else := concat(".", ["pg_catalog", t.name]) if {
	t.schema == ""
} else := concat(".", [t.schema, t.name]) if {
	is_string(t.schema)
} else := "a table without a name"

has_access(t) if count(t.access) > 0

access_of(t) := t.access if {
	has_access(t)
} else := ["use"]

verb("select") := "select from"

verb("insert") := "insert into"

verb("delete") := "delete from"

verb(kind) := kind if not kind in {"select", "insert", "delete"}

# ---------------------------------------------------------------------------
# The session and the command, for messages

role := r if {
	r := input.session.role
	is_string(r)
} else := ""

role_known if role in known_roles

not_supergod if role != "supergod"

role_label := sprintf("role %q", [role]) if {
	role != ""
} else := "a session without a role"

unknown_label := "the session has no role" if {
	role == ""
} else := sprintf("role %q is not known to the policy", [role])

# The parser gives command tags in upper case ("SELECT", "ALTER SYSTEM").
command_word := split(command, " ")[0]

# class and command are "" when missing: a `not x in s` with an undefined x
# would not be true but undefined.
class := c if {
	c := input.statement.class
	is_string(c)
} else := ""

command := c if {
	c := input.statement.command
	is_string(c)
} else := ""

command_label := command if {
	command != ""
} else := "this statement"
