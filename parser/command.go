package parser

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// factsOf walks one statement and returns its facts (all but the text-derived
// fields, which the caller fills in).
func factsOf(stmt *pg_query.Node) *Statement {
	w := newWalker()
	inner := unwrap(stmt)
	w.visit(inner)
	st := &Statement{}
	st.Command, st.Class = command(inner)
	if vs, ok := inner.(*pg_query.VariableSetStmt); ok {
		st.Setting = setting(vs)
		switch st.Setting.Name {
		case "role":
			w.flag(FlagSetRole)
		case "session_authorization":
			w.flag(FlagSetSessionAuthorization)
		}
	}
	switch s := inner.(type) {
	case *pg_query.AlterSystemStmt:
		st.DefaultSetting = defaultSetting(s.Setstmt)
	case *pg_query.AlterRoleSetStmt:
		st.DefaultSetting = defaultSetting(s.Setstmt)
	case *pg_query.AlterDatabaseSetStmt:
		st.DefaultSetting = defaultSetting(s.Setstmt)
	}
	// A read that changes data (a data-modifying CTE, COPY (DELETE ...
	// RETURNING) TO, EXPLAIN ANALYZE of a write, a cursor over one) is a
	// write. A plain EXPLAIN does not execute its statement.
	if st.Class == ClassRead && w.writes && !isPlainExplain(inner) {
		st.Class = ClassWrite
	}
	w.result(st)
	return st
}

func isPlainExplain(m proto.Message) bool {
	e, ok := m.(*pg_query.ExplainStmt)
	return ok && !explainAnalyze(e)
}

// setting describes a SET/RESET statement.
func setting(vs *pg_query.VariableSetStmt) *Setting {
	s := &Setting{Name: strings.ToLower(vs.Name), Local: vs.IsLocal}
	switch vs.Kind {
	case pg_query.VariableSetKind_VAR_RESET, pg_query.VariableSetKind_VAR_SET_DEFAULT:
		s.IsReset = true
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		s.IsReset = true
		s.Name = "all"
	}
	if len(vs.Args) == 1 {
		s.Value = constText(vs.Args[0].GetAConst())
	}
	return s
}

// defaultSetting describes the SET/RESET of an ALTER SYSTEM, ALTER ROLE or
// ALTER DATABASE statement, or returns nil.
func defaultSetting(vs *pg_query.VariableSetStmt) *Setting {
	if vs == nil {
		return nil
	}
	return setting(vs)
}

// constText returns a constant's value as text, or "" for NULL or a non-constant.
func constText(c *pg_query.A_Const) string {
	if c == nil || c.Isnull {
		return ""
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Sval:
		return v.Sval.Sval
	case *pg_query.A_Const_Ival:
		return strconv.FormatInt(int64(v.Ival.Ival), 10)
	case *pg_query.A_Const_Fval:
		return v.Fval.Fval
	case *pg_query.A_Const_Boolval:
		return strconv.FormatBool(v.Boolval.Boolval)
	case *pg_query.A_Const_Bsval:
		return v.Bsval.Bsval
	}
	return ""
}

// command returns the command tag and class of a statement (see doc.go).
func command(m proto.Message) (string, Class) {
	tag := commandTag(m)
	switch s := m.(type) {
	case *pg_query.CopyStmt:
		if s.IsFrom {
			return tag, ClassWrite
		}
		return tag, ClassRead
	case *pg_query.VariableSetStmt:
		switch strings.ToLower(s.Name) {
		case "role", "session_authorization":
			return tag, ClassDCL
		}
		return tag, ClassUtility
	case *pg_query.ExplainStmt:
		if explainAnalyze(s) {
			_, c := command(unwrap(s.Query))
			return tag, c
		}
		return tag, ClassRead
	case *pg_query.DeclareCursorStmt:
		_, c := command(unwrap(s.Query))
		return tag, c
	}
	return tag, tagClass(tag)
}

// tagClass classifies a command tag.
func tagClass(tag string) Class {
	switch tag {
	case "SELECT", "SHOW", "FETCH", "MOVE", "DECLARE CURSOR", "EXPLAIN":
		return ClassRead
	case "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE TABLE":
		return ClassWrite
	case "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
		"PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED":
		return ClassTransaction
	case "GRANT", "REVOKE", "GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES",
		"CREATE ROLE", "ALTER ROLE", "DROP ROLE", "DROP OWNED", "REASSIGN OWNED",
		"ALTER SYSTEM":
		return ClassDCL
	case "SELECT INTO", "COMMENT", "SECURITY LABEL", "REFRESH MATERIALIZED VIEW",
		"IMPORT FOREIGN SCHEMA":
		return ClassDDL
	}
	for _, p := range [...]string{"CREATE ", "ALTER ", "DROP "} {
		if strings.HasPrefix(tag, p) {
			return ClassDDL
		}
	}
	return ClassUtility
}

// objectNames are the SQL names of object types, as command tags spell them.
var objectNames = map[pg_query.ObjectType]string{
	pg_query.ObjectType_OBJECT_ACCESS_METHOD:         "ACCESS METHOD",
	pg_query.ObjectType_OBJECT_AGGREGATE:             "AGGREGATE",
	pg_query.ObjectType_OBJECT_AMOP:                  "OPERATOR FAMILY",
	pg_query.ObjectType_OBJECT_AMPROC:                "OPERATOR FAMILY",
	pg_query.ObjectType_OBJECT_ATTRIBUTE:             "TYPE",
	pg_query.ObjectType_OBJECT_CAST:                  "CAST",
	pg_query.ObjectType_OBJECT_COLUMN:                "TABLE",
	pg_query.ObjectType_OBJECT_COLLATION:             "COLLATION",
	pg_query.ObjectType_OBJECT_CONVERSION:            "CONVERSION",
	pg_query.ObjectType_OBJECT_DATABASE:              "DATABASE",
	pg_query.ObjectType_OBJECT_DEFAULT:               "TABLE",
	pg_query.ObjectType_OBJECT_DEFACL:                "DEFAULT PRIVILEGES",
	pg_query.ObjectType_OBJECT_DOMAIN:                "DOMAIN",
	pg_query.ObjectType_OBJECT_DOMCONSTRAINT:         "DOMAIN",
	pg_query.ObjectType_OBJECT_EVENT_TRIGGER:         "EVENT TRIGGER",
	pg_query.ObjectType_OBJECT_EXTENSION:             "EXTENSION",
	pg_query.ObjectType_OBJECT_FDW:                   "FOREIGN DATA WRAPPER",
	pg_query.ObjectType_OBJECT_FOREIGN_SERVER:        "SERVER",
	pg_query.ObjectType_OBJECT_FOREIGN_TABLE:         "FOREIGN TABLE",
	pg_query.ObjectType_OBJECT_FUNCTION:              "FUNCTION",
	pg_query.ObjectType_OBJECT_INDEX:                 "INDEX",
	pg_query.ObjectType_OBJECT_LANGUAGE:              "LANGUAGE",
	pg_query.ObjectType_OBJECT_LARGEOBJECT:           "LARGE OBJECT",
	pg_query.ObjectType_OBJECT_MATVIEW:               "MATERIALIZED VIEW",
	pg_query.ObjectType_OBJECT_OPCLASS:               "OPERATOR CLASS",
	pg_query.ObjectType_OBJECT_OPERATOR:              "OPERATOR",
	pg_query.ObjectType_OBJECT_OPFAMILY:              "OPERATOR FAMILY",
	pg_query.ObjectType_OBJECT_PARAMETER_ACL:         "PARAMETER",
	pg_query.ObjectType_OBJECT_POLICY:                "POLICY",
	pg_query.ObjectType_OBJECT_PROCEDURE:             "PROCEDURE",
	pg_query.ObjectType_OBJECT_PUBLICATION:           "PUBLICATION",
	pg_query.ObjectType_OBJECT_PUBLICATION_NAMESPACE: "PUBLICATION",
	pg_query.ObjectType_OBJECT_PUBLICATION_REL:       "PUBLICATION",
	pg_query.ObjectType_OBJECT_ROLE:                  "ROLE",
	pg_query.ObjectType_OBJECT_ROUTINE:               "ROUTINE",
	pg_query.ObjectType_OBJECT_RULE:                  "RULE",
	pg_query.ObjectType_OBJECT_SCHEMA:                "SCHEMA",
	pg_query.ObjectType_OBJECT_SEQUENCE:              "SEQUENCE",
	pg_query.ObjectType_OBJECT_SUBSCRIPTION:          "SUBSCRIPTION",
	pg_query.ObjectType_OBJECT_STATISTIC_EXT:         "STATISTICS",
	pg_query.ObjectType_OBJECT_TABCONSTRAINT:         "TABLE",
	pg_query.ObjectType_OBJECT_TABLE:                 "TABLE",
	pg_query.ObjectType_OBJECT_TABLESPACE:            "TABLESPACE",
	pg_query.ObjectType_OBJECT_TRANSFORM:             "TRANSFORM",
	pg_query.ObjectType_OBJECT_TRIGGER:               "TRIGGER",
	pg_query.ObjectType_OBJECT_TSCONFIGURATION:       "TEXT SEARCH CONFIGURATION",
	pg_query.ObjectType_OBJECT_TSDICTIONARY:          "TEXT SEARCH DICTIONARY",
	pg_query.ObjectType_OBJECT_TSPARSER:              "TEXT SEARCH PARSER",
	pg_query.ObjectType_OBJECT_TSTEMPLATE:            "TEXT SEARCH TEMPLATE",
	pg_query.ObjectType_OBJECT_TYPE:                  "TYPE",
	pg_query.ObjectType_OBJECT_USER_MAPPING:          "USER MAPPING",
	pg_query.ObjectType_OBJECT_VIEW:                  "VIEW",
}

// objectTag returns verb + " " + the object type's name, or "???" as
// PostgreSQL does for an unknown type.
func objectTag(verb string, t pg_query.ObjectType) string {
	if name, ok := objectNames[t]; ok {
		return verb + " " + name
	}
	return "???"
}

// fixedTags are the command tags of statements whose tag does not depend on
// their fields.
var fixedTags = map[string]string{
	"InsertStmt": "INSERT", "DeleteStmt": "DELETE", "UpdateStmt": "UPDATE", "MergeStmt": "MERGE",
	"PLAssignStmt": "SELECT", "DeclareCursorStmt": "DECLARE CURSOR",
	"CreateDomainStmt": "CREATE DOMAIN", "CreateSchemaStmt": "CREATE SCHEMA", "CreateStmt": "CREATE TABLE",
	"CreateTableSpaceStmt": "CREATE TABLESPACE", "DropTableSpaceStmt": "DROP TABLESPACE",
	"AlterTableSpaceOptionsStmt": "ALTER TABLESPACE", "CreateExtensionStmt": "CREATE EXTENSION",
	"AlterExtensionStmt": "ALTER EXTENSION", "AlterExtensionContentsStmt": "ALTER EXTENSION",
	"CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER", "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
	"CreateForeignServerStmt": "CREATE SERVER", "AlterForeignServerStmt": "ALTER SERVER",
	"CreateUserMappingStmt": "CREATE USER MAPPING", "AlterUserMappingStmt": "ALTER USER MAPPING",
	"DropUserMappingStmt": "DROP USER MAPPING", "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
	"ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA", "TruncateStmt": "TRUNCATE TABLE",
	"CommentStmt": "COMMENT", "SecLabelStmt": "SECURITY LABEL", "CopyStmt": "COPY",
	"AlterDomainStmt": "ALTER DOMAIN", "AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES",
	"CompositeTypeStmt": "CREATE TYPE", "CreateEnumStmt": "CREATE TYPE", "CreateRangeStmt": "CREATE TYPE",
	"AlterEnumStmt": "ALTER TYPE", "ViewStmt": "CREATE VIEW", "IndexStmt": "CREATE INDEX",
	"RuleStmt": "CREATE RULE", "CreateSeqStmt": "CREATE SEQUENCE", "AlterSeqStmt": "ALTER SEQUENCE",
	"DoStmt": "DO", "CreatedbStmt": "CREATE DATABASE", "AlterDatabaseStmt": "ALTER DATABASE",
	"AlterDatabaseRefreshCollStmt": "ALTER DATABASE", "AlterDatabaseSetStmt": "ALTER DATABASE",
	"DropdbStmt": "DROP DATABASE", "NotifyStmt": "NOTIFY", "ListenStmt": "LISTEN",
	"UnlistenStmt": "UNLISTEN", "LoadStmt": "LOAD", "CallStmt": "CALL", "ClusterStmt": "CLUSTER",
	"ExplainStmt": "EXPLAIN", "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
	"AlterSystemStmt": "ALTER SYSTEM", "VariableShowStmt": "SHOW",
	"CreateTransformStmt": "CREATE TRANSFORM", "CreateTrigStmt": "CREATE TRIGGER",
	"CreateEventTrigStmt": "CREATE EVENT TRIGGER", "AlterEventTrigStmt": "ALTER EVENT TRIGGER",
	"CreatePLangStmt": "CREATE LANGUAGE", "CreateRoleStmt": "CREATE ROLE", "AlterRoleStmt": "ALTER ROLE",
	"AlterRoleSetStmt": "ALTER ROLE", "DropRoleStmt": "DROP ROLE", "DropOwnedStmt": "DROP OWNED",
	"ReassignOwnedStmt": "REASSIGN OWNED", "LockStmt": "LOCK TABLE", "ConstraintsSetStmt": "SET CONSTRAINTS",
	"CheckPointStmt": "CHECKPOINT", "ReindexStmt": "REINDEX", "CreateConversionStmt": "CREATE CONVERSION",
	"CreateCastStmt": "CREATE CAST", "CreateOpClassStmt": "CREATE OPERATOR CLASS",
	"CreateOpFamilyStmt": "CREATE OPERATOR FAMILY", "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY",
	"AlterOperatorStmt": "ALTER OPERATOR", "AlterTypeStmt": "ALTER TYPE",
	"AlterTSDictionaryStmt":    "ALTER TEXT SEARCH DICTIONARY",
	"AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION", "CreatePolicyStmt": "CREATE POLICY",
	"AlterPolicyStmt": "ALTER POLICY", "CreateAmStmt": "CREATE ACCESS METHOD",
	"CreatePublicationStmt": "CREATE PUBLICATION", "AlterPublicationStmt": "ALTER PUBLICATION",
	"CreateSubscriptionStmt": "CREATE SUBSCRIPTION", "AlterSubscriptionStmt": "ALTER SUBSCRIPTION",
	"DropSubscriptionStmt": "DROP SUBSCRIPTION", "AlterCollationStmt": "ALTER COLLATION",
	"PrepareStmt": "PREPARE", "ExecuteStmt": "EXECUTE", "CreateStatsStmt": "CREATE STATISTICS",
	"AlterStatsStmt": "ALTER STATISTICS",
}

// commandTag returns the tag PostgreSQL's CreateCommandTag gives a raw
// statement, with "SELECT INTO" for SELECT ... INTO.
func commandTag(m proto.Message) string {
	switch s := m.(type) {
	case nil:
		return "???"
	case *pg_query.SelectStmt:
		if s.IntoClause != nil {
			return "SELECT INTO"
		}
		return "SELECT"
	case *pg_query.TransactionStmt:
		return transactionTag(s.Kind)
	case *pg_query.ClosePortalStmt:
		if s.Portalname == "" {
			return "CLOSE CURSOR ALL"
		}
		return "CLOSE CURSOR"
	case *pg_query.FetchStmt:
		if s.Ismove {
			return "MOVE"
		}
		return "FETCH"
	case *pg_query.DropStmt:
		return objectTag("DROP", s.RemoveType)
	case *pg_query.RenameStmt:
		switch s.RenameType {
		case pg_query.ObjectType_OBJECT_COLUMN, pg_query.ObjectType_OBJECT_TABCONSTRAINT:
			// ALTER TABLE / VIEW / FOREIGN TABLE ... RENAME COLUMN
			return objectTag("ALTER", s.RelationType)
		}
		return objectTag("ALTER", s.RenameType)
	case *pg_query.AlterObjectDependsStmt:
		return objectTag("ALTER", s.ObjectType)
	case *pg_query.AlterObjectSchemaStmt:
		return objectTag("ALTER", s.ObjectType)
	case *pg_query.AlterOwnerStmt:
		return objectTag("ALTER", s.ObjectType)
	case *pg_query.AlterTableMoveAllStmt:
		return objectTag("ALTER", s.Objtype)
	case *pg_query.AlterTableStmt:
		return objectTag("ALTER", s.Objtype)
	case *pg_query.AlterFunctionStmt:
		return objectTag("ALTER", s.Objtype)
	case *pg_query.GrantStmt:
		if s.IsGrant {
			return "GRANT"
		}
		return "REVOKE"
	case *pg_query.GrantRoleStmt:
		if s.IsGrant {
			return "GRANT ROLE"
		}
		return "REVOKE ROLE"
	case *pg_query.DefineStmt:
		return objectTag("CREATE", s.Kind)
	case *pg_query.CreateFunctionStmt:
		if s.IsProcedure {
			return "CREATE PROCEDURE"
		}
		return "CREATE FUNCTION"
	case *pg_query.VacuumStmt:
		if s.IsVacuumcmd {
			return "VACUUM"
		}
		return "ANALYZE"
	case *pg_query.CreateTableAsStmt:
		switch {
		case s.Objtype == pg_query.ObjectType_OBJECT_MATVIEW:
			return "CREATE MATERIALIZED VIEW"
		case s.IsSelectInto:
			return "SELECT INTO"
		}
		return "CREATE TABLE AS"
	case *pg_query.VariableSetStmt:
		switch s.Kind {
		case pg_query.VariableSetKind_VAR_RESET, pg_query.VariableSetKind_VAR_RESET_ALL:
			return "RESET"
		}
		return "SET"
	case *pg_query.DiscardStmt:
		switch s.Target {
		case pg_query.DiscardMode_DISCARD_ALL:
			return "DISCARD ALL"
		case pg_query.DiscardMode_DISCARD_PLANS:
			return "DISCARD PLANS"
		case pg_query.DiscardMode_DISCARD_TEMP:
			return "DISCARD TEMP"
		case pg_query.DiscardMode_DISCARD_SEQUENCES:
			return "DISCARD SEQUENCES"
		}
		return "???"
	case *pg_query.DeallocateStmt:
		if s.Isall {
			return "DEALLOCATE ALL"
		}
		return "DEALLOCATE"
	}
	if tag, ok := fixedTags[string(m.ProtoReflect().Descriptor().Name())]; ok {
		return tag
	}
	return "???"
}

func transactionTag(k pg_query.TransactionStmtKind) string {
	switch k {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN:
		return "BEGIN"
	case pg_query.TransactionStmtKind_TRANS_STMT_START:
		return "START TRANSACTION"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		return "COMMIT"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK, pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return "ROLLBACK"
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return "SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		return "RELEASE"
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		return "PREPARE TRANSACTION"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		return "COMMIT PREPARED"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return "ROLLBACK PREPARED"
	}
	return "???"
}
