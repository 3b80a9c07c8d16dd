# Functions: every role but supergod may call only functions known to be
# safe. Nothing else is callable, so a function nobody thought of (one that
# runs SQL given as text, reads a file, signals a backend, shows other
# sessions' statements or changes server state) is denied by default.
#
# The proxy resolves every call in the database's own catalog (pg_proc) and
# gives each one in input.statement.functions as
#
#   {"schema": "", "name": "ts_rewrite", "args": 2, "field": false,
#    "resolved": true,
#    "candidates": [{"schema": "pg_catalog", "name": "ts_rewrite",
#                    "arguments": "tsquery, text", "oid": 3684, "builtin": true,
#                    "kind": "function", "volatility": "volatile",
#                    "language": "internal", "security_definer": false,
#                    "returns_set": false}]}
#
# `candidates` is every function the call may run: for an unqualified name
# the functions of that name in every schema, of every overload whose
# number of parameters fits. A call is allowed only when it has candidates
# and every one of them is allowed. `field` marks a call spelled as a field
# selection, `(pid).pg_terminate_backend`, which PostgreSQL runs as
# pg_terminate_backend(pid); a field selection that is no function's name
# is a column, and the proxy does not list it.
#
# A function is allowed when it is
#   - built into PostgreSQL (created by initdb) and immutable: it computes
#     from its arguments only, and can read nothing and change nothing;
#   - built in, in pg_catalog, and named in safe_builtin_functions below
#     (stable and volatile functions reviewed one by one);
#   - named in function_permissions[role] (matrix.rego): how a deployment
#     allows its own functions, role by role.
package dbal

violations contains [2, i, 0, "function", msg] if {
	some i, f in input.statement.functions
	not_supergod
	not function_allowed(f)
	msg := function_denial(f)
}

function_allowed(f) if {
	f.resolved
	count(f.candidates) > 0
	every c in f.candidates {
		candidate_allowed(c)
	}
}

# Without a catalog (dbalproxy explain without a database) a field
# selection cannot be told from a column; the proxy always resolves them
# when it serves.
function_allowed(f) if {
	not f.resolved
	f.field
}

candidate_allowed(c) if {
	c.builtin
	c.volatility == "immutable"
	c.kind != "procedure"
}

candidate_allowed(c) if {
	c.builtin
	c.schema == "pg_catalog"
	c.name in safe_builtin_functions
}

candidate_allowed(c) if {
	concat(".", [c.schema, c.name]) in object.get(function_permissions, role, set())
}

function_denial(f) := sprintf("%s may not call %s: it is not a function known to be safe (%s)", [role_label, describe_candidate(c), why_unsafe(c)]) if {
	f.resolved
	some c in f.candidates
	not candidate_allowed(c)
} else := sprintf("%s may not call %s(): no function of that name takes %s in the database's catalog", [role_label, function_label(f), args_label(f)]) if {
	f.resolved
} else := sprintf("%s may not call %s(): the proxy could not look it up in the database's catalog", [role_label, function_label(f)])

describe_candidate(c) := sprintf("%s.%s(%s)", [c.schema, c.name, c.arguments])

why_unsafe(c) := "it was created in the database, and the proxy cannot see what it does; a policy must allow it by name" if {
	not c.builtin
} else := "a procedure" if {
	c.kind == "procedure"
} else := sprintf("a %s built-in function that is not on the list of safe ones: it may read other sessions' data or files, run SQL given as text, or change server state", [c.volatility])

function_label(f) := concat(".", [f.schema, f.name]) if {
	f.schema != ""
} else := f.name

args_label(f) := "that many arguments" if {
	f.args >= 0
} else := "those arguments"

# Stable and volatile built-in functions every known role may call: date
# and time, formatting, JSON and text search, catalog inspection (psql's \d,
# ORMs' introspection), privileges, the session's own identity and
# settings, sizes of relations, random values, transaction-scoped advisory
# locks, and sequences (nextval, setval and currval name their sequence,
# which the table rules then decide like any relation). Left out on
# purpose, among others: query_to_xml and the other *_to_xml functions,
# ts_stat and ts_rewrite(tsquery, text) (they run SQL given as text), the
# pg_stat_get_* functions, pg_prepared_statement and pg_cursor (other
# sessions' statements under pooling), pg_read_file, pg_ls_dir, lo_* (files
# and large objects), pg_terminate_backend, pg_cancel_backend,
# pg_reload_conf (signals), session advisory locks, lastval, and anything
# about replication, WAL, backups or statistics.
safe_builtin_functions := {
	# date and time
	"age", "clock_timestamp", "date", "date_part", "date_trunc", "extract", "generate_series",
	"make_timestamptz", "now", "overlaps", "statement_timestamp", "time", "timeofday", "timestamp",
	"timestamptz", "timetz", "timezone", "to_char", "to_date", "to_number", "to_timestamp",
	"transaction_timestamp", "interval_pl_timestamptz", "timestamptz_pl_interval", "timestamptz_mi_interval",
	"date_cmp_timestamptz", "date_eq_timestamptz", "date_ge_timestamptz", "date_gt_timestamptz",
	"date_le_timestamptz", "date_lt_timestamptz", "date_ne_timestamptz",
	"timestamp_cmp_timestamptz", "timestamp_eq_timestamptz", "timestamp_ge_timestamptz",
	"timestamp_gt_timestamptz", "timestamp_le_timestamptz", "timestamp_lt_timestamptz",
	"timestamp_ne_timestamptz", "timestamptz_cmp_date", "timestamptz_cmp_timestamp",
	"timestamptz_eq_date", "timestamptz_eq_timestamp", "timestamptz_ge_date", "timestamptz_ge_timestamp",
	"timestamptz_gt_date", "timestamptz_gt_timestamp", "timestamptz_le_date", "timestamptz_le_timestamp",
	"timestamptz_lt_date", "timestamptz_lt_timestamp", "timestamptz_ne_date", "timestamptz_ne_timestamp",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until",
	# text, formatting, conversion
	"anytextcat", "textanycat", "concat", "concat_ws", "convert", "convert_from", "convert_to", "format",
	"length", "quote_literal", "quote_nullable", "money", "numeric", "array_to_string",
	"getdatabaseencoding", "pg_char_to_encoding", "pg_client_encoding", "pg_encoding_to_char",
	"pg_collation_for",
	# JSON
	"array_to_json", "json_agg", "json_build_array", "json_build_object", "json_object_agg",
	"json_populate_record", "json_populate_recordset", "json_to_record", "json_to_recordset",
	"jsonb_agg", "jsonb_build_array", "jsonb_build_object", "jsonb_populate_record",
	"jsonb_populate_recordset", "jsonb_to_record", "jsonb_to_recordset", "row_to_json", "to_json",
	"to_jsonb", "jsonb_path_exists_tz", "jsonb_path_match_tz", "jsonb_path_query_array_tz",
	"jsonb_path_query_first_tz", "jsonb_path_query_tz",
	# text search (not ts_stat, not ts_rewrite(tsquery, text))
	"get_current_ts_config", "json_to_tsvector", "jsonb_to_tsvector", "phraseto_tsquery",
	"plainto_tsquery", "to_tsquery", "to_tsvector", "ts_debug", "ts_headline", "ts_match_tq",
	"ts_match_tt", "ts_parse", "ts_token_type", "websearch_to_tsquery",
	# XML values (not the *_to_xml functions, which read tables or run SQL)
	"xml", "xml_is_well_formed",
	# enums and ranges
	"enum_first", "enum_last", "enum_range", "in_range",
	# random values
	"gen_random_uuid", "random",
	# the session, the server, privileges
	"current_database", "current_schema", "current_schemas", "current_setting", "current_user",
	"session_user", "getpgusername", "version", "pg_backend_pid", "pg_postmaster_start_time",
	"pg_conf_load_time", "pg_trigger_depth", "row_security_active", "inet_client_addr",
	"inet_client_port", "inet_server_addr", "inet_server_port", "pg_is_in_recovery",
	"pg_jit_available", "pg_my_temp_schema", "pg_is_other_temp_schema",
	"has_any_column_privilege", "has_column_privilege", "has_database_privilege",
	"has_foreign_data_wrapper_privilege", "has_function_privilege", "has_language_privilege",
	"has_parameter_privilege", "has_schema_privilege", "has_sequence_privilege",
	"has_server_privilege", "has_table_privilege", "has_tablespace_privilege", "has_type_privilege",
	"pg_has_role", "aclexplode",
	# settings: set_config is decided through input.statement.configs
	"set_config", "pg_settings_get_flags", "pg_show_all_settings",
	# transactions and snapshots
	"txid_current", "txid_current_if_assigned", "txid_current_snapshot", "pg_current_snapshot",
	"pg_current_xact_id", "pg_current_xact_id_if_assigned", "mxid_age",
	# transaction-scoped advisory locks (released at COMMIT/ROLLBACK)
	"pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
	"pg_try_advisory_xact_lock_shared",
	# notifications (as NOTIFY)
	"pg_notify",
	# sequences: the sequence is decided as a relation (see the parser's
	# sequence access); lastval is not here (another client's value under
	# transaction pooling)
	"nextval", "setval", "currval", "pg_sequence_parameters", "pg_get_serial_sequence",
	# catalog inspection: psql's \d commands, drivers' and ORMs' introspection
	"col_description", "obj_description", "shobj_description", "format_type", "oidvectortypes",
	"pg_collation_is_visible", "pg_conversion_is_visible", "pg_function_is_visible",
	"pg_opclass_is_visible", "pg_operator_is_visible", "pg_opfamily_is_visible",
	"pg_statistics_obj_is_visible", "pg_table_is_visible", "pg_ts_config_is_visible",
	"pg_ts_dict_is_visible", "pg_ts_parser_is_visible", "pg_ts_template_is_visible",
	"pg_type_is_visible", "pg_typeof", "pg_column_compression", "pg_column_is_updatable",
	"pg_column_size", "pg_describe_object", "pg_get_catalog_foreign_keys", "pg_get_constraintdef",
	"pg_get_expr", "pg_get_function_arg_default", "pg_get_function_arguments",
	"pg_get_function_identity_arguments", "pg_get_function_result", "pg_get_function_sqlbody",
	"pg_get_functiondef", "pg_get_indexdef", "pg_get_keywords", "pg_get_object_address",
	"pg_get_partition_constraintdef", "pg_get_partkeydef", "pg_get_publication_tables",
	"pg_get_replica_identity_index", "pg_get_ruledef", "pg_get_statisticsobjdef",
	"pg_get_statisticsobjdef_columns", "pg_get_statisticsobjdef_expressions", "pg_get_triggerdef",
	"pg_get_userbyid", "pg_get_viewdef", "pg_identify_object", "pg_identify_object_as_address",
	"pg_index_column_has_property", "pg_index_has_property", "pg_indexam_has_property",
	"pg_options_to_table", "pg_relation_is_publishable", "pg_relation_is_updatable",
	"pg_timezone_abbrevs", "pg_timezone_names", "pg_partition_tree", "pg_partition_ancestors",
	"pg_relation_size", "pg_table_size", "pg_total_relation_size", "pg_indexes_size",
	"to_regclass", "to_regcollation", "to_regnamespace", "to_regoper", "to_regoperator", "to_regproc",
	"to_regprocedure", "to_regrole", "to_regtype", "regclass",
}
