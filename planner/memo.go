package planner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"

	"github.com/dbalproxy/dbalproxy/decision"
)

// The decision memo: policy decisions keyed by a hash of the whole policy
// input, so that a statement text never seen before whose facts (command,
// tables with their access and columns, functions with their candidates,
// flags, configs, setting), session, transaction state and backend were
// decided before skips OPA.
//
// The key covers every field of decision.Input (the encoding walks the
// struct, so a field added later is covered too), except the fields that
// no rule of the policy set in force can read (decision.InputUse, found by
// walking the compiled rules at load; see maskable): with the shipped
// policies the normalized text, the fingerprint, the login name and the
// connection's and backend's details, which they never look at. Two
// inputs with the same key are therefore the same to the policy, and a
// deterministic policy decides them alike; a set that calls a
// non-deterministic built-in (time.now_ns, http.send, ...) is never
// memoized. The key also carries the set's version, the enforcement mode
// and the catalog's generation.

// memoKey is the SHA-256 of a decision's input, as memoEncoder encodes it.
type memoKey [sha256.Size]byte

// maskable are the input fields a policy set often ignores; each is left
// out of the key when the set in force cannot read it. Every other field
// is always in the key.
var maskable = []struct {
	path  []string
	clear func(*decision.Input)
}{
	{[]string{"statement", "text"}, func(in *decision.Input) { in.Statement.Text = "" }},
	{[]string{"statement", "fingerprint"}, func(in *decision.Input) { in.Statement.Fingerprint = "" }},
	{[]string{"session", "user"}, func(in *decision.Input) { in.Session.User = "" }},
	{[]string{"session", "database"}, func(in *decision.Input) { in.Session.Database = "" }},
	{[]string{"session", "application_name"}, func(in *decision.Input) { in.Session.ApplicationName = "" }},
	{[]string{"session", "client_addr"}, func(in *decision.Input) { in.Session.ClientAddr = "" }},
	{[]string{"session", "tls"}, func(in *decision.Input) { in.Session.TLS = false }},
	{[]string{"transaction"}, func(in *decision.Input) { in.Transaction = decision.Transaction{} }},
	{[]string{"backend", "version"}, func(in *decision.Input) { in.Backend.Version = "" }},
	{[]string{"backend", "version_num"}, func(in *decision.Input) { in.Backend.VersionNum = 0 }},
	{[]string{"backend", "settings"}, func(in *decision.Input) { in.Backend.Settings = nil }},
}

// memoMask is the masking for one policy set.
type memoMask struct {
	use   *decision.InputUse
	clear []func(*decision.Input)
}

// mask returns the fields to clear for use, computed once per policy set.
func (p *Planner) mask(use *decision.InputUse) *memoMask {
	if m := p.masks.Load(); m != nil && m.use == use {
		return m
	}
	m := &memoMask{use: use}
	for _, f := range maskable {
		if !use.Reads(f.path...) {
			m.clear = append(m.clear, f.clear)
		}
	}
	p.masks.Store(m)
	return m
}

// memoKey returns the key of in's decision, the version of the policy set
// it belongs to, and whether in may be memoized at all.
func (p *Planner) memoKey(in *decision.Input) (memoKey, string, bool) {
	if p.memo == nil {
		return memoKey{}, "", false
	}
	use, ok := p.cfg.Policy.InputUse()
	if !ok || !use.Deterministic {
		return memoKey{}, "", false
	}
	m := p.mask(use)
	masked := *in
	for _, clear := range m.clear {
		clear(&masked)
	}
	var gen uint64
	if p.cfg.Catalog != nil {
		gen = p.cfg.Catalog.Generation()
	}
	e := encoders.Get().(*memoEncoder)
	defer encoders.Put(e)
	e.out.Reset()
	e.str("dbalproxy decision memo 1")
	e.str(use.Version)
	e.str(string(p.cfg.Policy.Mode()))
	e.uint(gen)
	if err := e.value(reflect.ValueOf(&masked).Elem()); err != nil {
		return memoKey{}, "", false
	}
	return sha256.Sum256(e.out.Bytes()), use.Version, true
}

// decide is the policy's decision for in, from the memo when an equal
// input was decided by the same policy set.
func (p *Planner) decide(ctx context.Context, in *decision.Input) (decision.Decision, error) {
	key, version, ok := p.memoKey(in)
	if ok {
		if d, hit := p.memo.Get(key); hit {
			return d, nil
		}
	}
	d, err := p.cfg.Policy.Decide(ctx, in)
	if ok && err == nil && ctx.Err() == nil && d.Version == version && memoizable(&d) {
		p.memo.Add(key, d)
	}
	return d, err
}

// memoizable: not a failure that permissive mode turned into an allow (a
// cancelled or failed evaluation says nothing about the next one).
func memoizable(d *decision.Decision) bool {
	return !d.WouldDeny || (d.Rule != "error" && d.Rule != "row_rules")
}

// memoEncoder encodes a value unambiguously: every string and collection
// is length-prefixed, every dynamic type named,
// map entries sorted by their encoding. What it writes is then hashed.
type memoEncoder struct {
	out bytes.Buffer
	num [8]byte
}

var encoders = sync.Pool{New: func() any { return new(memoEncoder) }}

func (e *memoEncoder) str(s string) { e.strTo(&e.out, s) }

func (e *memoEncoder) strTo(w *bytes.Buffer, s string) {
	e.uintTo(w, uint64(len(s)))
	w.WriteString(s)
}

func (e *memoEncoder) uint(n uint64) { e.uintTo(&e.out, n) }

func (e *memoEncoder) uintTo(w *bytes.Buffer, n uint64) {
	binary.LittleEndian.PutUint64(e.num[:], n)
	w.Write(e.num[:])
}

var errNotEncodable = errors.New("wire: the input holds a value the memo cannot encode")

func (e *memoEncoder) value(v reflect.Value) error { return e.valueTo(&e.out, v) }

func (e *memoEncoder) valueTo(w *bytes.Buffer, v reflect.Value) error {
	// Each value starts with its kind, so that nil, empty and zero differ.
	switch v.Kind() {
	case reflect.String:
		w.WriteByte('s')
		e.strTo(w, v.String())
	case reflect.Bool:
		if v.Bool() {
			w.WriteByte('T')
		} else {
			w.WriteByte('F')
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w.WriteByte('i')
		e.uintTo(w, uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.WriteByte('u')
		e.uintTo(w, v.Uint())
	case reflect.Float32, reflect.Float64:
		w.WriteByte('f')
		e.uintTo(w, math.Float64bits(v.Float()))
	case reflect.Pointer:
		if v.IsNil() {
			w.WriteByte('0')
			return nil
		}
		w.WriteByte('p')
		return e.valueTo(w, v.Elem())
	case reflect.Interface:
		if v.IsNil() {
			w.WriteByte('0')
			return nil
		}
		w.WriteByte('d')
		e.strTo(w, v.Elem().Type().String())
		return e.valueTo(w, v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			w.WriteByte('0')
			return nil
		}
		w.WriteByte('a')
		e.uintTo(w, uint64(v.Len()))
		for i := range v.Len() {
			if err := e.valueTo(w, v.Index(i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.IsNil() {
			w.WriteByte('0')
			return nil
		}
		w.WriteByte('m')
		e.uintTo(w, uint64(v.Len()))
		return e.mapTo(w, v)
	case reflect.Struct:
		// Fields in declaration order: a struct type's encoding has one
		// layout, so no names are needed.
		w.WriteByte('{')
		for _, i := range exportedFields(v.Type()) {
			if err := e.valueTo(w, v.Field(i)); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	default:
		return fmt.Errorf("%w: %s", errNotEncodable, v.Type())
	}
	return nil
}

// fieldCache holds the exported fields of the struct types encoded.
var fieldCache sync.Map // reflect.Type -> []int

// exportedFields are the indexes of t's exported fields (unexported ones
// are invisible to the policy's input conversion).
func exportedFields(t reflect.Type) []int {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]int)
	}
	var idx []int
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			idx = append(idx, i)
		}
	}
	fieldCache.Store(t, idx)
	return idx
}

// mapTo writes a map's entries in the order of their encodings.
func (e *memoEncoder) mapTo(w *bytes.Buffer, v reflect.Value) error {
	var buf bytes.Buffer
	type span struct{ from, to int }
	entries := make([]span, 0, v.Len())
	for it := v.MapRange(); it.Next(); {
		from := buf.Len()
		if err := e.valueTo(&buf, it.Key()); err != nil {
			return err
		}
		if err := e.valueTo(&buf, it.Value()); err != nil {
			return err
		}
		entries = append(entries, span{from, buf.Len()})
	}
	b := buf.Bytes()
	slices.SortFunc(entries, func(x, y span) int { return bytes.Compare(b[x.from:x.to], b[y.from:y.to]) })
	for _, s := range entries {
		e.uintTo(w, uint64(s.to-s.from))
		w.Write(b[s.from:s.to])
	}
	return nil
}
