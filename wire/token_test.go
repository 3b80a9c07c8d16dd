package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dbalproxy/dbalproxy/wire"
	"github.com/jackc/pgx/v5"
)

// TestEndUserTokenNotInBackend checks that a switch's token never stands in
// the backend's query text, where pg_stat_activity (and, under transaction
// pooling, other clients of the same backend connection) would show it:
// the backend gets the token without its signature, which is no credential.
func TestEndUserTokenNotInBackend(t *testing.T) {
	p, _, _ := identityProxy(t, wire.TokenOverTLSOrLoopback)
	ctx := ctxT(t, 60*time.Second)
	super, err := pgx.Connect(ctx, p.Cluster.SuperURL(p.DB))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	for _, tc := range []struct {
		mode pgx.QueryExecMode
		sql  func(tok string) string
	}{
		{pgx.QueryExecModeSimpleProtocol, func(tok string) string { return "SET LOCAL dbal.token = '" + tok + "'" }},
		{pgx.QueryExecModeSimpleProtocol, func(tok string) string { return "SELECT set_config('dbal.token', '" + tok + "', true)" }},
		{pgx.QueryExecModeCacheStatement, func(tok string) string { return "SELECT set_config('dbal.token', '" + tok + "', true)" }},
	} {
		c := connectMode(t, p.URL("api"), tc.mode)
		tok := userToken(t, "u_alice", "user")
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, tc.sql(tok)); err != nil {
			t.Fatalf("%s: %v", tc.sql("<token>"), err)
		}
		if got := strings.Join(userIDs(t, ctx, tx), ","); got != "u_alice" {
			t.Fatalf("as end user u_alice: sees %s", got)
		}
		var setting string
		if err := tx.QueryRow(ctx, "SELECT current_setting('dbal.token')").Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSuffix(tok, sig); setting != want {
			t.Errorf("current_setting('dbal.token') = %q, want the token without its signature %q", setting, want)
		}
		// Everything a superuser can see of every backend's statements.
		rows, err := super.Query(ctx, "SELECT coalesce(query, '') FROM pg_stat_activity")
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range texts {
			if strings.Contains(q, sig) {
				t.Errorf("%s: the token's signature is in pg_stat_activity: %q", tc.sql("<token>"), q)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
}
