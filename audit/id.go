package audit

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
)

// decisionIDAlphabet is Crockford's base32 alphabet in lower case: digits and
// letters without i, l, o and u, so an id read aloud or retyped from an error
// message is unambiguous, and it is one word for double-click selection.
const decisionIDAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// DecisionIDLen is the length of the ids NewDecisionID returns.
const DecisionIDLen = 16

// idSources holds ChaCha8 generators (a CSPRNG), each seeded from crypto/rand
// when the pool creates it. Drawing from a pooled generator costs a few tens
// of nanoseconds on any kernel, where crypto/rand.Read is a system call on
// kernels without the getrandom vDSO.
var idSources = sync.Pool{New: func() any {
	var seed [32]byte
	crand.Read(seed[:]) // never returns an error (Go 1.24+); crashes the program if the OS has no randomness
	return rand.NewChaCha8(seed)
}}

// NewDecisionID returns a new decision id: 16 characters of lower-case
// Crockford base32 ([0-9a-hjkmnp-tv-z]) carrying 80 random bits, e.g.
// "7k3q9x0m2c8v4d1r". It is URL-safe, needs no quoting in SQL, logs or error
// messages, and collisions are negligible (about 4e-7 after 10^9 ids). The
// format is stable: matchers may rely on ^[0-9a-hjkmnp-tv-z]{16}$. It is safe
// for concurrent use.
func NewDecisionID() string {
	src := idSources.Get().(*rand.ChaCha8)
	hi, lo := src.Uint64(), src.Uint64()
	idSources.Put(src)
	// 80 bits: all 64 of hi and the top 16 of lo.
	var b [DecisionIDLen]byte
	for i := range 12 { // 12*5 = 60 bits from hi
		b[i] = decisionIDAlphabet[hi>>(59-5*i)&31]
	}
	rest := (hi&0xf)<<16 | lo>>48 // remaining 4 bits of hi + 16 of lo = 20 bits
	for i := range 4 {
		b[12+i] = decisionIDAlphabet[rest>>(15-5*i)&31]
	}
	return string(b[:])
}
