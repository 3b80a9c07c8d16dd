# The tables, roles and limits of the dbalproxy demo policy. dbal.rego turns
# them into decisions; edit this file to change who may do what.
package dbal

# The roles this policy knows. A session whose role is not listed here (or
# that has no role) may only run transaction control and SET/RESET/SHOW/
# DISCARD/DEALLOCATE (see harmless_words below).
known_roles := {"user", "admin", "god", "supergod", "migrator"}

# The seed's CRUD letters as PostgreSQL access kinds.
crud := {"select", "insert", "update", "delete"}

# The seed's role matrix over the demo schema (all in schema public):
#
#   table                        user    admin   god   supergod
#   users (own row)              RU      RU      CRUD  CRUD
#   users (others)               -       CRUD    CRUD  CRUD
#   page_views                   R       R       CRUD  CRUD
#   component_hierarchy          -       -       CRUD  CRUD
#   workflows, lua_scripts       -       -       CRUD  CRUD
#   packages                     -       R       CRUD  CRUD
#
# permissions[role][table] is the set of access kinds the role may use on
# public.<table>; "*" means every kind (CRUD, TRUNCATE, ...). A table missing
# from a role's entry is off limits to it. supergod may do anything and
# migrator may use every non-catalog table; neither needs an entry here.
#
# "users" holds both users rows of the seed: the operation level is decided
# here, and row_rules in dbal.rego emits the row filter that limits role
# "user" to its own row.
permissions := {
	"user": {
		"users": {"select", "update"},
		"page_views": {"select"},
	},
	"admin": {
		"users": {"select", "insert", "update", "delete"},
		"page_views": {"select"},
		"packages": {"select"},
	},
	"god": {
		"users": {"*"},
		"page_views": {"*"},
		"component_hierarchy": {"*"},
		"workflows": {"*"},
		"lua_scripts": {"*"},
		"packages": {"*"},
	},
}

# Per-role statement timeout and row cap (the seed's pagination caps). A
# missing key means no limit.
limits := {
	"user": {"timeout_ms": 5000, "max_rows": 1000},
	"admin": {"timeout_ms": 5000, "max_rows": 5000},
	"god": {"timeout_ms": 30000},
}

# Functions a role may call besides the built-in ones functions.rego knows
# to be safe, by "schema.name" as the catalog has them. This is where a
# deployment allows its own functions: the proxy cannot see what a function
# body does (it runs with the backend role's rights and past any row
# filter), so allow one only for roles that may see everything it reads and
# do everything it does. supergod may call anything. migrator (prisma
# migrate) takes a session advisory lock around migrations.
function_permissions := {
	"migrator": {
		"pg_catalog.pg_advisory_lock", "pg_catalog.pg_advisory_unlock",
		"pg_catalog.pg_try_advisory_lock", "pg_catalog.pg_advisory_unlock_all",
	},
}

# Statement flags (set by the parser) that only supergod may use, with why.
denied_flags := {
	"copy_program": "COPY ... PROGRAM runs a shell command on the database server",
	"copy_file": "COPY to or from a server file reads or writes the database server's disk",
	"set_role": "SET/RESET ROLE changes the backend's privileges",
	"set_session_authorization": "SET/RESET SESSION AUTHORIZATION changes the backend's identity",
	"dynamic_relation": "its nextval, setval or currval names the sequence by a value that is not a constant, so the proxy cannot tell which sequence it uses",
}

# Settings that SET may not change (a second line of defence behind the
# set_role and set_session_authorization flags).
denied_settings := {"role": "set_role", "session_authorization": "set_session_authorization"}

# Utility commands (by first word) that every known role may run. Other
# utility statements (VACUUM, ANALYZE, CHECKPOINT, LOAD, LOCK, ...) are for
# supergod only.
# (SHOW, EXPLAIN, COPY, FETCH are reads or writes, not utility statements;
# PREPARE carries the facts of the statement it prepares, so its tables are
# checked like any other.)
utility_words := {
	"SET", "RESET", "DISCARD", "LISTEN", "UNLISTEN", "NOTIFY",
	"DEALLOCATE", "PREPARE", "EXECUTE", "CLOSE",
}

# Commands (by first word) that even a session without a known role may run,
# besides transaction control.
harmless_words := {"SET", "RESET", "SHOW", "DISCARD", "DEALLOCATE"}

# Schemas whose tables every known role may read.
catalog_schemas := {"pg_catalog", "information_schema"}

# Catalog relations that show what row filters hide, so only supergod may
# read them: column statistics (most common values, histograms), and the
# views of the backend connections' statements, which every client of the
# proxy shares (the backend role is the same for all): other clients' query
# texts with their literals (pg_stat_activity) and, under transaction
# pooling, the rewritten statements prepared on a backend, filter values
# included (pg_prepared_statements, pg_cursors).
statistics_catalogs := {
	"pg_catalog.pg_statistic", "pg_catalog.pg_stats",
	"pg_catalog.pg_statistic_ext_data", "pg_catalog.pg_stats_ext", "pg_catalog.pg_stats_ext_exprs",
	"pg_catalog.pg_stat_activity", "pg_catalog.pg_prepared_statements", "pg_catalog.pg_cursors",
}
