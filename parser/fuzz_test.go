package parser

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"SELECT 1",
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
		"SELECT u.id, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE u.email = 'x'",
		"SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.id = a.id) s",
		"WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
		"WITH d AS (DELETE FROM t RETURNING *) INSERT INTO a SELECT * FROM d",
		"SELECT id FROM a UNION SELECT id FROM b ORDER BY 1",
		"SELECT * FROM jobs FOR UPDATE SKIP LOCKED",
		"INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a RETURNING *",
		"UPDATE t SET (a, b) = (SELECT x, y FROM s WHERE s.id = t.id)",
		"DELETE FROM t USING s WHERE t.id = s.id RETURNING t.*",
		"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
		"COPY t FROM PROGRAM 'x'",
		"COPY (SELECT 1) TO STDOUT",
		"TRUNCATE a, b",
		"CREATE TABLE t (id int PRIMARY KEY REFERENCES o(id))",
		"DROP TABLE IF EXISTS a, b.c",
		"GRANT SELECT ON t TO r",
		"SET LOCAL dbal.token = 'x'",
		"SET ROLE admin; RESET ROLE",
		"BEGIN; SELECT 1; COMMIT",
		"EXPLAIN ANALYZE DELETE FROM t",
		"PREPARE p AS SELECT $1",
		"DECLARE c CURSOR FOR SELECT 1; FETCH 1 FROM c",
		"DO $$ BEGIN END $$",
		"SELECT pg_catalog.pg_read_file('/etc/passwd')",
		`SELECT "public"."users"."id" FROM "public"."users" WHERE ("public"."users"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3`,
		"-- comment only",
		"/* a /* b */ */ SELECT 1 ;; SELECT 'é'",
		"SELECT * FORM t",
		"SELECT set_config('standard_conforming_strings', 'off', false)",
		"SELECT pg_catalog.set_config($1, $2, true) FROM (SELECT set_config(name, 'x', false) FROM pg_settings) s",
		"ALTER SYSTEM SET client_encoding = 'SJIS'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		p := New(Options{})
		res, err := p.Parse(sql)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) && se.SQLState() != "42601" {
				t.Fatalf("SyntaxError with SQLState %q", se.SQLState())
			}
			return
		}
		for i, st := range res.Statements {
			if st.Location < 0 || st.Length < 0 || st.Location+st.Length > len(sql) {
				t.Fatalf("statement %d: span %d+%d outside input of %d bytes", i, st.Location, st.Length, len(sql))
			}
			if got := sql[st.Location : st.Location+st.Length]; got != st.Text {
				t.Fatalf("statement %d: input[%d:%d] = %q, Text %q", i, st.Location, st.Location+st.Length, got, st.Text)
			}
		}
		// Every set_config call names what it changes, or ConfigUnknown:
		// the proxy refuses set_config of its pinned settings from this.
		for i, st := range res.Statements {
			calls := false
			for _, fn := range st.Functions {
				calls = calls || fn.Name == "set_config"
			}
			if calls != (len(st.ConfigNames) > 0) {
				t.Fatalf("statement %d: calls set_config %v, ConfigNames %q", i, calls, st.ConfigNames)
			}
		}
		// Deterministic: an uncached second parse yields the same facts.
		again, err := New(Options{}).Parse(sql)
		if err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		if len(again.Statements) != len(res.Statements) {
			t.Fatalf("second parse: %d statements, first %d", len(again.Statements), len(res.Statements))
		}
		for i := range res.Statements {
			a, b := *res.Statements[i], *again.Statements[i]
			a.Tree, b.Tree = nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("statement %d differs between parses:\n%+v\n%+v", i, a, b)
			}
		}
	})
}
