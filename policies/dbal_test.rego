# Tests of the shipped policy: run them with `dbalproxy policy test policies`
# (or `opa test policies`).
package dbal_test

import data.dbal

# ---------------------------------------------------------------------------
# Helpers

alice_claims := {"user_id": "u_alice"}

session(role) := {
	"user": "alice", "role": role, "claims": alice_claims, "database": "app",
	"application_name": "test", "client_addr": "127.0.0.1", "tls": false,
}

# stmt is an input for a statement with the given command, class, tables,
# functions and flags.
stmt(role, command, class, tables, functions, flags) := {
	"session": session(role),
	"statement": {
		"command": command, "class": class, "tables": tables, "functions": functions,
		"flags": flags, "fingerprint": "0", "text": "",
	},
	"transaction": {"active": false},
	"backend": {"version": "17.2", "version_num": 170002, "settings": {}},
}

command_of := {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}

class_of := {"select": "read", "insert": "write", "update": "write", "delete": "write"}

table(schema, name, kind) := {"schema": schema, "name": name, "access": [kind], "columns": {}}

# on is an input for one CRUD statement on one table.
on(role, schema, name, kind) := stmt(role, command_of[kind], class_of[kind], [table(schema, name, kind)], [], [])

# dec is the decision for an input.
dec(inp) := d if {
	d := dbal.decision with input as inp
}

decide(role, name, kind) := dec(on(role, "public", name, kind))

allowed(role, name, kind) if decide(role, name, kind).allow == true

denied(role, name, kind) if decide(role, name, kind).allow == false

# exactly holds if role may use exactly these CRUD kinds on public.<name>.
exactly(role, name, kinds) if {
	every kind in kinds {
		allowed(role, name, kind)
	}
	every kind in dbal.crud - kinds {
		denied(role, name, kind)
	}
}

# command is an input for a table-less statement.
command(role, cmd, class) := stmt(role, cmd, class, [], [], [])

# calls is an input for a SELECT calling the pg_catalog function fname,
# resolved in the catalog as a built-in of the given volatility.
calls(role, fname, volatility) := stmt(role, "SELECT", "read", [], [called(fname, [builtin(fname, volatility)])], [])

called(fname, candidates) := {"schema": "", "name": fname, "args": 1, "field": false, "resolved": true, "candidates": candidates}

builtin(fname, volatility) := {
	"schema": "pg_catalog", "name": fname, "arguments": "text", "oid": 1000, "builtin": true,
	"kind": "function", "volatility": volatility, "language": "internal",
	"security_definer": false, "returns_set": false,
}

own(schema, fname) := {
	"schema": schema, "name": fname, "arguments": "", "oid": 20000, "builtin": false,
	"kind": "function", "volatility": "immutable", "language": "sql",
	"security_definer": false, "returns_set": false,
}

flagged(role, cmd, class, flag) := stmt(role, cmd, class, [], [], [flag])

crud := {"select", "insert", "update", "delete"}

# ---------------------------------------------------------------------------
# The matrix, one test per cell. "users (own)" and "users (others)" share the
# operation level; the "others" tests check the row rules (rows.rego) against
# another user's row.

test_users_own_user if exactly("user", "users", {"select", "update"})

test_users_own_admin if exactly("admin", "users", crud)

test_users_own_god if exactly("god", "users", crud)

test_users_own_supergod if exactly("supergod", "users", crud)

# other_row is another user's row of public.users.
other_row := {"id": "u_bob", "role": "user"}

row_allowed(family, op, role, row) if {
	family == "rows"
	dbal.rows["public.users"][op] with input as {"session": session(role), "row": row}
}

row_allowed(family, op, role, row) if {
	family == "new_rows"
	dbal.new_rows["public.users"][op] with input as {"session": session(role), "row": row}
}

test_users_others_user if {
	# A user never sees or changes another row: its row rules allow only
	# id = its own user_id, and insert/delete are denied.
	every op in {"select", "update", "delete"} {
		not row_allowed("rows", op, "user", other_row)
	}
	not row_allowed("new_rows", "update", "user", other_row)
	denied("user", "users", "insert")
	denied("user", "users", "delete")
}

test_users_others_admin if {
	exactly("admin", "users", crud)
	every op in {"select", "update", "delete"} {
		row_allowed("rows", op, "admin", other_row)
	}
	every op in {"insert", "update"} {
		row_allowed("new_rows", op, "admin", other_row)
	}
}

test_users_others_god if {
	exactly("god", "users", crud)
	every op in {"select", "update", "delete"} {
		row_allowed("rows", op, "god", {"id": "u_bob", "role": "supergod"})
	}
	every op in {"insert", "update"} {
		row_allowed("new_rows", op, "god", {"id": "u_bob", "role": "supergod"})
	}
}

test_users_others_supergod if {
	exactly("supergod", "users", crud)
	row_allowed("rows", "update", "supergod", {"id": "u_bob", "role": "supergod"})
	row_allowed("new_rows", "insert", "supergod", {"id": "u_bob", "role": "supergod"})
}

test_page_views_user if exactly("user", "page_views", {"select"})

test_page_views_admin if exactly("admin", "page_views", {"select"})

test_page_views_god if exactly("god", "page_views", crud)

test_page_views_supergod if exactly("supergod", "page_views", crud)

test_component_hierarchy_user if exactly("user", "component_hierarchy", set())

test_component_hierarchy_admin if exactly("admin", "component_hierarchy", set())

test_component_hierarchy_god if exactly("god", "component_hierarchy", crud)

test_component_hierarchy_supergod if exactly("supergod", "component_hierarchy", crud)

test_workflows_user if exactly("user", "workflows", set())

test_workflows_admin if exactly("admin", "workflows", set())

test_workflows_god if exactly("god", "workflows", crud)

test_workflows_supergod if exactly("supergod", "workflows", crud)

test_lua_scripts_user if exactly("user", "lua_scripts", set())

test_lua_scripts_admin if exactly("admin", "lua_scripts", set())

test_lua_scripts_god if exactly("god", "lua_scripts", crud)

test_lua_scripts_supergod if exactly("supergod", "lua_scripts", crud)

test_packages_user if exactly("user", "packages", set())

test_packages_admin if exactly("admin", "packages", {"select"})

test_packages_god if exactly("god", "packages", crud)

test_packages_supergod if exactly("supergod", "packages", crud)

# ---------------------------------------------------------------------------
# Tables outside the matrix, schemas, migrator

test_unqualified_table_is_public if {
	d := dbal.decision with input as on("user", "", "page_views", "select")
	d.allow
	d.reason == `allowed: role "user" may select public.page_views`
}

test_unlisted_table_supergod_only if {
	not dec(on("god", "public", "secrets", "select")).allow
	dec(on("supergod", "public", "secrets", "delete")).allow
}

test_other_schema_is_not_the_matrix if {
	d := dbal.decision with input as on("god", "audit", "users", "select")
	not d.allow
	d.reason == `role "god" may not select from audit.users`
}

test_truncate_needs_all if {
	t := {"schema": "", "name": "users", "access": ["truncate"], "columns": {}}
	not dec(stmt("admin", "TRUNCATE", "write", [t], [], [])).allow
	dec(stmt("god", "TRUNCATE", "write", [t], [], [])).allow
}

test_migrator_all_dml if {
	every name in {"users", "workflows", "_prisma_migrations", "anything"} {
		every kind in crud {
			dec(on("migrator", "public", name, kind)).allow
		}
	}
}

test_migrator_no_limits if {
	d := dbal.decision with input as on("migrator", "public", "users", "select")
	d.timeout_ms == 0
	d.max_rows == 0
}

# ---------------------------------------------------------------------------
# Catalog reads

test_catalog_reads_everyone if {
	every role in {"user", "admin", "god", "supergod", "migrator"} {
		every t in [
			table("pg_catalog", "pg_class", "select"),
			table("information_schema", "tables", "select"),
			table("", "pg_type", "select"),
		] {
			dec(stmt(role, "SELECT", "read", [t], [], [])).allow
		}
	}
}

test_statistics_catalogs_supergod_only if {
	every t in [
		table("pg_catalog", "pg_stats", "select"),
		table("", "pg_statistic", "select"),
		table("pg_catalog", "pg_stats_ext", "select"),
		table("", "pg_prepared_statements", "select"),
		table("pg_catalog", "pg_stat_activity", "select"),
	] {
		every role in {"user", "admin", "god", "migrator"} {
			not dec(stmt(role, "SELECT", "read", [t], [], [])).allow
		}
		dec(stmt("supergod", "SELECT", "read", [t], [], [])).allow
	}
}

test_catalog_read_reason if {
	d := dbal.decision with input as stmt("user", "SELECT", "read", [table("", "pg_type", "select")], [], [])
	d.reason == `allowed: role "user" may select pg_catalog.pg_type`
}

test_catalog_writes_supergod_only if {
	t := table("pg_catalog", "pg_class", "update")
	not dec(stmt("god", "UPDATE", "write", [t], [], [])).allow
	not dec(stmt("migrator", "UPDATE", "write", [t], [], [])).allow
	dec(stmt("supergod", "UPDATE", "write", [t], [], [])).allow
}

test_catalog_read_mixed_with_denied_table if {
	ts := [table("pg_catalog", "pg_class", "select"), table("public", "workflows", "select")]
	d := dbal.decision with input as stmt("user", "SELECT", "read", ts, [], [])
	not d.allow
	d.reason == `role "user" may not select from public.workflows`
}

# ---------------------------------------------------------------------------
# DDL, DCL, ALTER SYSTEM, DO/CALL, other utility

test_ddl_supergod_and_migrator if {
	dec(command("supergod", "CREATE TABLE", "ddl")).allow
	d := dbal.decision with input as command("migrator", "CREATE TABLE", "ddl")
	d.allow
	d.reason == `allowed: role "migrator" may run CREATE TABLE (DDL)`
}

test_ddl_denied_others if {
	every role in {"user", "admin", "god", "intern"} {
		not dec(command(role, "DROP TABLE", "ddl")).allow
	}
	d := dbal.decision with input as command("god", "DROP TABLE", "ddl")
	d.reason == `role "god" may not run DROP TABLE: schema changes (DDL) are for supergod and migrator only`
	d.rule == "ddl"
}

test_dcl_supergod_only if {
	dec(command("supergod", "GRANT", "dcl")).allow
	every role in {"migrator", "god", "admin"} {
		d := dbal.decision with input as command(role, "GRANT", "dcl")
		not d.allow
		d.rule == "dcl"
	}
}

test_alter_system_supergod_only if {
	dec(command("supergod", "ALTER SYSTEM", "utility")).allow
	d := dbal.decision with input as command("migrator", "ALTER SYSTEM", "dcl")
	not d.allow
	d.rule == "alter_system"
	d.reason == `role "migrator" may not run ALTER SYSTEM: it changes the server's configuration (supergod only)`
}

test_do_and_call_supergod_only if {
	every cmd in {"DO", "CALL"} {
		dec(command("supergod", cmd, "utility")).allow
		every role in {"god", "migrator", "user"} {
			d := dbal.decision with input as command(role, cmd, "utility")
			not d.allow
			d.rule == "code"
		}
	}
}

test_other_utility_supergod_only if {
	d := dbal.decision with input as command("god", "VACUUM", "utility")
	not d.allow
	d.reason == `role "god" may not run VACUUM (supergod only)`
	dec(command("supergod", "VACUUM", "utility")).allow
}

test_missing_statement_denied if {
	d := dec({"session": session("god")})
	not d.allow
	d.rule == "class"
	d.reason == `role "god" may not run this statement: statements of class "" are for supergod only`
}

test_missing_command_denied if {
	d := dec({"session": session("god"), "statement": {"class": "utility"}})
	not d.allow
	d.reason == `role "god" may not run this statement (supergod only)`
}

test_malformed_table_denied if {
	every t in [{"name": "users"}, {"schema": "public", "name": "users"}, {"schema": "public"}, {}] {
		d := dec(stmt("user", "SELECT", "read", [t], [], []))
		not d.allow
		d.rule == "table_access"
	}
}

test_unknown_class_denied if {
	d := dbal.decision with input as command("god", "FROBNICATE", "mystery")
	not d.allow
	d.rule == "class"
}

# ---------------------------------------------------------------------------
# Transaction control and harmless utility

test_transaction_control_every_role if {
	every role in {"user", "admin", "god", "supergod", "migrator", "intern", ""} {
		every cmd in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT"} {
			dec(command(role, cmd, "transaction")).allow
		}
	}
}

test_utility_known_roles if {
	every role in {"user", "admin", "god", "migrator"} {
		every cmd in {"SET", "RESET", "SET CONSTRAINTS", "DISCARD ALL", "LISTEN", "UNLISTEN", "NOTIFY", "DEALLOCATE", "DEALLOCATE ALL", "PREPARE", "EXECUTE", "CLOSE CURSOR"} {
			dec(command(role, cmd, "utility")).allow
		}
		dec(command(role, "SHOW", "read")).allow
	}
	d := dbal.decision with input as command("user", "SET", "utility")
	d.reason == `allowed: role "user" may run SET`
}

test_lock_and_maintenance_supergod_only if {
	every cmd in {"LOCK TABLE", "VACUUM", "ANALYZE", "CHECKPOINT", "LOAD", "CLUSTER", "REINDEX", "???"} {
		not dec(command("god", cmd, "utility")).allow
		dec(command("supergod", cmd, "utility")).allow
	}
}

test_set_role_as_parsed if {
	# The parser classes SET/RESET ROLE and SESSION AUTHORIZATION as dcl
	# and flags them; the reason names the flag.
	every cmd in {"SET", "RESET"} {
		inp := json.patch(flagged("admin", cmd, "dcl", "set_role"), [{"op": "add", "path": "/statement/setting", "value": {"name": "role", "local": false}}])
		d := dec(inp)
		not d.allow
		d.rule == "set_role"
	}
	d := dec(flagged("intern", "SET", "dcl", "set_session_authorization"))
	d.rule == "set_session_authorization"
	dec(flagged("supergod", "SET", "dcl", "set_role")).allow
}

test_unknown_role_harmless_only if {
	every role in {"intern", ""} {
		dec(command(role, "SET", "utility")).allow
		dec(command(role, "SHOW", "read")).allow
		not dec(command(role, "LISTEN", "utility")).allow
		not dec(command(role, "SELECT", "read")).allow
		not dec(on(role, "public", "page_views", "select")).allow
		not dec(stmt(role, "SELECT", "read", [table("pg_catalog", "pg_class", "select")], [], [])).allow
	}
}

test_unknown_role_reason if {
	d := dbal.decision with input as on("intern", "public", "users", "select")
	d.rule == "unknown_role"
	d.reason == `role "intern" is not known to the policy: only transaction control and SET, RESET, SHOW, DISCARD or DEALLOCATE are allowed, not SELECT`
}

test_missing_role if {
	inp := json.remove(on("x", "public", "users", "select"), ["session/role"])
	d := dbal.decision with input as inp
	not d.allow
	d.reason == "the session has no role: only transaction control and SET, RESET, SHOW, DISCARD or DEALLOCATE are allowed, not SELECT"
}

test_no_table_select_known_roles if {
	d := dbal.decision with input as command("user", "SELECT", "read")
	d.allow
	d.rule == "no_tables"
}

# ---------------------------------------------------------------------------
# Functions

test_unlisted_builtins_denied if {
	every fname in {
		"pg_read_file", "pg_ls_dir", "lo_import", "lo_from_bytea", "pg_terminate_backend",
		"query_to_xml", "table_to_xml", "ts_stat", "ts_rewrite", "pg_stat_get_activity",
		"pg_prepared_statement", "pg_advisory_unlock_shared", "lastval",
	} {
		every role in {"user", "admin", "god", "migrator", "intern"} {
			d := dbal.decision with input as calls(role, fname, "volatile")
			not d.allow
		}
		every role in {"user", "admin", "god"} {
			dec(calls(role, fname, "volatile")).rule == "function"
		}
		dec(calls("supergod", fname, "volatile")).allow
	}
}

test_function_permissions if {
	dec(calls("migrator", "pg_advisory_lock", "volatile")).allow
	not dec(calls("god", "pg_advisory_lock", "volatile")).allow
}

test_immutable_builtins_allowed if {
	every role in {"user", "admin", "god", "migrator"} {
		d := dec(calls(role, "lower", "immutable"))
		d.allow
		d.rule == "functions"
	}
}

test_listed_builtins_allowed if {
	every fname in {"now", "set_config", "to_char", "format", "pg_get_constraintdef", "nextval"} {
		dec(calls("user", fname, "stable")).allow
	}
}

# A call is allowed only if every overload it may be is: ts_rewrite with two
# arguments may be the volatile (tsquery, text) one that runs a query.
test_every_candidate_must_be_allowed if {
	f := called("ts_rewrite", [builtin("ts_rewrite", "immutable"), builtin("ts_rewrite", "volatile")])
	d := dbal.decision with input as stmt("user", "SELECT", "read", [], [f], [])
	not d.allow
	d.reason == `role "user" may not call pg_catalog.ts_rewrite(text): it is not a function known to be safe (a volatile built-in function that is not on the list of safe ones: it may read other sessions' data or files, run SQL given as text, or change server state)`
}

test_unknown_and_unresolved_functions_denied if {
	d := dbal.decision with input as stmt("god", "SELECT", "read", [], [called("nosuch", [])], [])
	not d.allow
	d.reason == `role "god" may not call nosuch(): no function of that name takes that many arguments in the database's catalog`
	u := {"schema": "", "name": "lower", "args": 1, "field": false, "resolved": false, "candidates": []}
	d2 := dbal.decision with input as stmt("user", "SELECT", "read", [], [u], [])
	not d2.allow
	d2.reason == `role "user" may not call lower(): the proxy could not look it up in the database's catalog`
}

# A field selection that resolves to a function is that call.
test_field_selection_is_a_call if {
	f := object.union(called("pg_terminate_backend", [builtin("pg_terminate_backend", "volatile")]), {"field": true})
	not dec(stmt("admin", "SELECT", "read", [], [f], [])).allow
}

# A deployment's own functions are denied until a policy allows them by name.
test_own_functions if {
	f := called("my_report", [own("public", "my_report")])
	d := dbal.decision with input as stmt("god", "SELECT", "read", [], [f], [])
	not d.allow
	contains(d.reason, "it was created in the database")
	dec(stmt("god", "SELECT", "read", [], [f], [])).allow with dbal.function_permissions as {"god": {"public.my_report"}}
}

test_function_reason_names_first if {
	fs := [called("lower", [builtin("lower", "immutable")]), called("pg_read_file", [builtin("pg_read_file", "volatile")]), called("dblink", [own("public", "dblink")])]
	d := dbal.decision with input as stmt("god", "SELECT", "read", [], fs, [])
	startswith(d.reason, `role "god" may not call pg_catalog.pg_read_file(text)`)
}

test_set_config_of_denied_settings if {
	every name in {"role", "session_authorization", "?"} {
		inp := object.union(calls("admin", "set_config", "volatile"), {"statement": {"configs": [name]}})
		not dec(inp).allow
	}
	ok := object.union(calls("admin", "set_config", "volatile"), {"statement": {"configs": ["search_path"]}})
	dec(ok).allow
}

test_set_config_allowed if {
	dec(calls("user", "set_config", "volatile")).allow
	dec(calls("user", "now", "stable")).allow
}

# ---------------------------------------------------------------------------
# Flags and settings

test_denied_flags if {
	every flag in {"copy_program", "copy_file", "set_role", "set_session_authorization"} {
		every role in {"user", "admin", "god", "migrator", "intern"} {
			d := dbal.decision with input as flagged(role, "COPY", "utility", flag)
			not d.allow
		}
		dec(flagged("supergod", "COPY", "utility", flag)).allow
	}
	d := dbal.decision with input as flagged("god", "COPY", "utility", "copy_program")
	d.rule == "copy_program"
	d.reason == `role "god" may not run COPY: COPY ... PROGRAM runs a shell command on the database server (supergod only)`
}

test_denied_flags_without_role if {
	inp := json.remove(flagged("x", "SET", "utility", "set_role"), ["session/role"])
	d := dec(inp)
	not d.allow
	d.rule == "set_role"
	d.reason == "a session without a role may not run SET: SET/RESET ROLE changes the backend's privileges (supergod only)"
}

test_set_role_by_setting if {
	inp := json.patch(command("admin", "SET", "utility"), [{"op": "add", "path": "/statement/setting", "value": {"name": "role", "local": false}}])
	d := dbal.decision with input as inp
	not d.allow
	d.rule == "set_role"
}

test_set_other_setting if {
	inp := json.patch(command("user", "SET", "utility"), [{"op": "add", "path": "/statement/setting", "value": {"name": "search_path", "local": true}}])
	dec(inp).allow
}

# ---------------------------------------------------------------------------
# Filters, checks, columns, limits. An allowed decision always has all five
# keys; {} and 0 mean none.

test_user_row_rules if {
	# The row conditions come from rows.rego (the proxy adds them); the
	# decision itself carries no SQL-form filters, only the column rule.
	d := decide("user", "users", "update")
	d.filters == {}
	d.checks == {}
	d.columns == {"public.users": {"deny_write": ["role", "id"]}}
}

test_user_row_rules_only_for_users if {
	d := decide("user", "page_views", "select")
	d.filters == {}
	d.checks == {}
	d.columns == {}
}

test_user_without_user_id_denied_users if {
	inp := json.remove(on("user", "public", "users", "select"), ["session/claims/user_id"])
	d := dbal.decision with input as inp
	not d.allow
	d.rule == "user_id_claim"
	dec(json.remove(on("user", "public", "page_views", "select"), ["session/claims/user_id"])).allow
}

test_numeric_user_id if {
	inp := json.patch(on("user", "public", "users", "select"), [{"op": "replace", "path": "/session/claims/user_id", "value": 42}])
	dbal.decision.allow with input as inp
	s := object.union(session("user"), {"claims": {"user_id": 42}})
	dbal.rows["public.users"].select with input as {"session": s, "row": {"id": 42}}
	not dbal.rows["public.users"].select with input as {"session": s, "row": {"id": "42"}}
}

test_admin_role_check if {
	d := decide("admin", "users", "insert")
	d.checks == {}
	d.filters == {}
	d.columns == {}
	row_allowed("new_rows", "insert", "admin", {"id": "u_x", "role": "admin"})
	not row_allowed("new_rows", "insert", "admin", {"id": "u_x", "role": "god"})
	not row_allowed("new_rows", "update", "admin", {"id": "u_x", "role": "supergod"})
}

test_limits if {
	u := decide("user", "page_views", "select")
	u.timeout_ms == 5000
	u.max_rows == 1000
	a := decide("admin", "page_views", "select")
	a.timeout_ms == 5000
	a.max_rows == 5000
	g := decide("god", "page_views", "select")
	g.timeout_ms == 30000
	g.max_rows == 0
	s := decide("supergod", "page_views", "select")
	s.timeout_ms == 0
	s.max_rows == 0
}

test_denied_has_no_extras if {
	d := decide("user", "users", "delete")
	object.keys(d) == {"allow", "reason", "rule"}
}

# ---------------------------------------------------------------------------
# Reasons

test_reason_denied if {
	d := decide("user", "page_views", "delete")
	d.reason == `role "user" may not delete from public.page_views`
	d.rule == "table_access"
}

test_reason_allowed if {
	decide("admin", "users", "select").reason == `allowed: role "admin" may select public.users`
	decide("god", "workflows", "insert").reason == `allowed: role "god" may insert public.workflows`
}

test_reason_names_first_offending_table if {
	ts := [
		table("public", "users", "select"),
		table("", "page_views", "delete"),
		table("public", "workflows", "select"),
	]
	d := dbal.decision with input as stmt("user", "DELETE", "write", ts, [], [])
	d.reason == `role "user" may not delete from public.page_views`
}

test_reason_first_access_kind if {
	t := {"schema": "public", "name": "packages", "access": ["select", "insert", "update"], "columns": {}}
	d := dbal.decision with input as stmt("admin", "INSERT", "write", [t], [], [])
	d.reason == `role "admin" may not insert into public.packages`
}

test_reason_more_tables if {
	ts := [table("public", "users", "select"), table("public", "page_views", "select")]
	d := dbal.decision with input as stmt("admin", "SELECT", "read", ts, [], [])
	d.reason == `allowed: role "admin" may select public.users and 1 more table`
}

test_reason_transaction if {
	d := dbal.decision with input as command("intern", "BEGIN", "transaction")
	d.reason == "allowed: transaction control (BEGIN) is open to every session"
}

test_reason_supergod if {
	d := decide("supergod", "lua_scripts", "delete")
	d.reason == `allowed: role "supergod" may run anything`
}

test_every_decision_has_reason if {
	every inp in [
		on("user", "public", "users", "delete"),
		on("admin", "public", "users", "delete"),
		command("intern", "SELECT", "read"),
		calls("god", "pg_ls_dir", "volatile"),
		command("god", "ALTER SYSTEM", "utility"),
	] {
		d := dbal.decision with input as inp
		is_string(d.reason)
		d.reason != ""
		is_string(d.rule)
	}
}
