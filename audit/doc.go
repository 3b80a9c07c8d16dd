// Package audit is dbalproxy's decision log: one structured line per
// statement decision and per login attempt, written through zerolog by a
// background writer so that a slow sink never blocks a session beyond a
// documented bound.
//
// The package imports only the standard library and github.com/rs/zerolog.
// It does not parse SQL: callers pass normalized text (literals replaced by
// $n, as pg_query's Normalize does) in Record.Query and Record.Rewritten, and
// the original text in Record.QueryRaw, which is written only when the logger
// was configured with Config.LogLiterals. Record.Error and Record.Reason are
// written exactly as given; keeping passwords and tokens out of them is the
// caller's job.
//
// # Use
//
//	al, err := audit.New(audit.Config{Output: "/var/log/dbalproxy/audit.log", BlockTimeout: time.Millisecond})
//	...
//	defer al.Close()
//	rec := audit.Record{Event: audit.EventStatement, User: "alice", Command: "SELECT",
//		Tables: []string{"public.users"}, Query: "SELECT * FROM users WHERE id = $1",
//		Decision: audit.DecisionRewrite, DecisionID: audit.NewDecisionID(), Rows: 1, Success: true}
//	al.Log(&rec) // copies rec; rec may be reused at once
//
// # Record format
//
// With Format "json" (the default) each record is one JSON object on its own
// line, fields in this order:
//
//	time              RFC 3339 with nanoseconds, UTC ("2024-01-15T10:30:00.123456789Z"); always
//	event             "statement" or "login"; always
//	session_id        omitted when empty (as are all strings below unless marked "always")
//	client_addr
//	user              the login name
//	role
//	user_id           claims.user_id
//	end_user          end user switched to for a transaction (SET LOCAL dbal.token)
//	database
//	application_name
//	command           "SELECT", "INSERT", ...
//	tables            array of "schema.table"; omitted when empty
//	fingerprint
//	query             normalized text, or the original text with Config.LogLiterals
//	decision          "allow" | "deny" | "rewrite" | "would_deny" (permissive mode)
//	reason
//	policy_version
//	rewritten         normalized rewritten text
//	duration_ms       number; always
//	rows              integer; omitted when Record.Rows is negative (unknown)
//	sqlstate          omitted on success
//	success           boolean; always
//	decision_id       see NewDecisionID; a denied client sees the same id in the error's DETAIL
//	error             short failure message
//
// Format "console" renders the same fields with zerolog.ConsoleWriter as one
// readable (not JSON) line per record, for the demo.
//
// # When the sink is slow or full
//
// Log never writes to the sink itself. It copies the Record into a slot of a
// bounded queue (Config.QueueSize, default 4096 records; slots and their
// Tables arrays are reused, so Log does not allocate in steady state). One
// writer goroutine takes the whole queue at once, encodes it, and hands it to
// the sink in one Write (or one per 64 KiB). After a small batch it pauses
// for 1 ms before taking the queue again, so that under load sessions do not
// pay for waking it and the sink gets few, large writes; while the queue
// stays empty it sleeps until the next Log. A record therefore reaches the
// sink about a millisecond after Log at most, unless the sink is slow.
//
// When the queue is full, Log waits at most Config.BlockTimeout for room
// (0, the default: it does not wait at all) and then drops the record. A
// session is therefore delayed by at most BlockTimeout per record, however
// slow or stuck the sink is. Dropped counts every dropped record; operators
// should export it as a metric and alert on it, because a dropped record is a
// decision with no audit trail. Choose a larger QueueSize or BlockTimeout to
// trade memory or latency for completeness. Written counts records the sink
// accepted and Failed those the sink returned an error for (the writer keeps
// going, so a sink that recovers receives later records).
//
// Close stops accepting records (Log then drops and counts), waits for the
// writer to hand everything queued to the sink, bounded by 5 s, and closes the
// file New opened. If the sink is stuck past the bound, Close returns an error
// and the writer drops (and counts) what is left as soon as its current Write
// returns; the writer goroutine stays blocked in that Write until then.
//
// zerolog's global level applies: zerolog.SetGlobalLevel(zerolog.Disabled)
// silences the audit log too (the records are then counted as dropped). Do not
// disable zerolog globally; set levels on loggers instead.
//
// # The seed's record
//
// The seed design's audit record (phase2-dbal-summary.txt, "Audit Log
// Example") is derivable from a statement record field by field:
//
//	seed        from this record
//	timestamp   time (RFC 3339; the seed shows milliseconds, this has nanoseconds)
//	user        user
//	userId      user_id
//	role        role
//	entity      tables[0], the statement's first table ("public.users"); the seed's
//	            Prisma model name is the table name (model User -> table "User")
//	operation   SeedOperation(command): SELECT -> read, INSERT -> create,
//	            UPDATE -> update, DELETE -> delete, others lower-cased
//	success     success
//
// A statement touching several tables yields one seed record per table when
// each table matters (entity = tables[i], same operation). Login records have
// no seed counterpart.
//
// # Decision ids
//
// NewDecisionID returns 16 characters of lower-case Crockford base32 (80
// random bits from a ChaCha8 generator seeded from crypto/rand), e.g.
// "7k3q9x0m2c8v4d1r". The format is stable.
package audit
