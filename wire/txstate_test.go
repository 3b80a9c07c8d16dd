package wire

import "testing"

func TestClassifySessionEffects(t *testing.T) {
	tx := newTxShared(nil)
	pins := []string{
		"SET search_path = x",
		"set WORK_MEM to '1MB'",
		"RESET work_mem",
		"RESET ALL",
		"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
		"SELECT set_config('a.b', 'c', false)",
		"SELECT set_config('a.b', 'c', $1)",
		"SELECT 1; SELECT set_config('a.b', 'c', 'off')",
		"CREATE TEMP TABLE t (i int)",
		"CREATE TEMPORARY VIEW v AS SELECT 1",
		"CREATE TABLE pg_temp.t (i int)",
		"SELECT 1 INTO TEMP t2",
		"CREATE TEMP TABLE t3 AS SELECT 1",
		"SELECT pg_advisory_lock(1)",
		"SELECT pg_try_advisory_lock_shared(1, 2)",
		`SELECT U&"\0070g_advisory_lock"(1)`,
		"LISTEN chan",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1",
		"PREPARE p AS SELECT 1",
		"EXECUTE p",
		"LOAD 'auto_explain'",
	}
	for _, q := range pins {
		if e := tx.effectOf(q); e.pin == "" {
			t.Errorf("%q does not pin", q)
		}
	}
	free := []string{
		"SELECT 1",
		"SET LOCAL work_mem = '1MB'",
		"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
		"SELECT set_config('dbal.token', 'x', true)",
		"SELECT pg_catalog.set_config('a.b', $1, true)",
		"SELECT pg_advisory_xact_lock(1)",
		"DECLARE c CURSOR FOR SELECT 1",
		"UPDATE users SET email = 'x' WHERE id = 'y'",
		"CREATE TABLE temperatures (i int)",
		"NOTIFY chan",
		"DEALLOCATE ALL",
		"DISCARD ALL",
	}
	for _, q := range free {
		if e := tx.effectOf(q); e.pin != "" {
			t.Errorf("%q pins (%s)", q, e.pin)
		}
	}
	for q, want := range map[string]bool{"DEALLOCATE ALL": true, "DEALLOCATE PREPARE ALL": true, "DISCARD ALL": true, "DEALLOCATE x": false, "DISCARD TEMP": false} {
		if got := tx.effectOf(q).dropsStmts; got != want {
			t.Errorf("%q dropsStmts = %v", q, got)
		}
	}
	if e := tx.effectOf("DEALLOCATE s1"); len(e.deallocates) != 1 || e.deallocates[0] != "s1" {
		t.Errorf("DEALLOCATE s1: %+v", e)
	}
	if e := tx.effectOf("PREPARE p2 (int) AS SELECT $1; EXECUTE p2(1)"); len(e.prepares) != 1 || len(e.executes) != 1 {
		t.Errorf("PREPARE/EXECUTE names: %+v", e)
	}
}

func TestBackendStmtName(t *testing.T) {
	a := backendStmtName("SELECT $1", []uint32{23})
	if a != backendStmtName("SELECT $1", []uint32{23}) || a == backendStmtName("SELECT $1", []uint32{25}) || a == backendStmtName("SELECT $1 ", []uint32{23}) {
		t.Fatal("names must depend on exactly the text and the parameter types")
	}
	if len(a) > 63 {
		t.Fatalf("%q is longer than NAMEDATALEN-1", a)
	}
	if safeStmtName(a) == a || safeStmtName("s0") != "s0" {
		t.Fatal("safeStmtName")
	}
}
