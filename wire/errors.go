package wire

import (
	"errors"
	"fmt"

	"github.com/dbalproxy/dbalproxy/plan"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes the proxy itself reports.
const (
	CodeProtocolViolation    = plan.CodeProtocolViolation
	CodeConnectionFailure    = "08006"
	CodeInvalidPassword      = "28P01"
	CodeInvalidAuthorization = "28000"
	CodeInvalidCatalogName   = "3D000"
	CodeTooManyConnections   = "53300"
	CodeInsufficientPriv     = plan.CodeInsufficientPriv
	CodeSyntaxError          = plan.CodeSyntaxError
	CodeUndefinedFunction    = plan.CodeUndefinedFunction
	CodeQueryCanceled        = "57014"
	CodeAdminShutdown        = "57P01"
	CodeCannotConnectNow     = "57P03"
	CodeFeatureNotSupported  = "0A000"
	CodeInternalError        = "XX000"
	CodeInFailedTransaction  = "25P02"
	CodeProgramLimitExceeded = "54000"
)

// Error is an error the proxy reports to a client itself. Its Message is meant
// for the client; internal causes never reach it.
type Error struct {
	Severity string // "ERROR" or "FATAL"; empty means ERROR
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
	Position int32 // 1-based character position in the statement, 0 for none
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.severity(), e.Message, e.Code)
}

// SQLState returns the error's SQLSTATE.
func (e *Error) SQLState() string { return e.Code }

func (e *Error) severity() string {
	if e.Severity == "" {
		return "ERROR"
	}
	return e.Severity
}

// fatalf builds a FATAL error with a formatted message.
func fatalf(code, format string, args ...any) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...)}
}

// sqlStater is satisfied by errors that know their SQLSTATE: *Error, pgconn's
// *PgError and the pool's errors.
type sqlStater interface{ SQLState() string }

// clientMessager is satisfied by errors that carry a message safe to show a
// client (the pool's dial errors).
type clientMessager interface{ ClientMessage() string }

// toErrorResponse is the one mapping from an error to what a client sees.
// Errors that are not the proxy's own, the pool's or the server's become a
// generic message (with their SQLSTATE if they know one, else the given
// fallback code), so that internal details never leak.
func toErrorResponse(err error, severity, fallbackCode string) *pgproto3.ErrorResponse {
	var pe *Error
	if errors.As(err, &pe) {
		sev := pe.severity()
		if severity == "FATAL" {
			sev = "FATAL"
		}
		return &pgproto3.ErrorResponse{
			Severity: sev, SeverityUnlocalized: sev, Code: pe.Code,
			Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint, Position: pe.Position,
		}
	}
	var cm clientMessager
	if errors.As(err, &cm) {
		// The pool's errors say themselves what a client may see: a
		// backend's refusal of the proxy's own connection (a PgError inside)
		// is not the client's, and its words name the backend role.
		code := fallbackCode
		var ss sqlStater
		if errors.As(err, &ss) {
			code = ss.SQLState()
		}
		var hint string
		var ch interface{ ClientHint() string }
		if errors.As(err, &ch) {
			hint = ch.ClientHint()
		}
		return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: cm.ClientMessage(), Hint: hint}
	}
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		return &pgproto3.ErrorResponse{
			Severity: severity, SeverityUnlocalized: severity, Code: pge.Code,
			Message: pge.Message, Detail: pge.Detail, Hint: pge.Hint,
		}
	}
	code := fallbackCode
	msg := "internal error in the proxy"
	var ss sqlStater
	if errors.As(err, &ss) {
		code = ss.SQLState()
	}
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg}
}
