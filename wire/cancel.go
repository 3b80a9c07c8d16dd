package wire

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
)

// cancelRegistry maps the cancel keys the proxy hands to clients
// (BackendKeyData) to their sessions. The keys are the proxy's own: a client
// never sees a backend's key, so it cannot cancel a statement of another
// client that shares the backend connection later.
type cancelRegistry struct {
	mu sync.Mutex
	m  map[uint32]*session
}

// register gives sess a fresh random key.
func (r *cancelRegistry) register(sess *session) {
	var b [8]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		pid = withPeerID(pid, sess.srv.cfg.PeerID) // the proxy instance's id: see wire/server.go
		if pid == 0 || r.m[pid] != nil {
			continue
		}
		sess.keyPID = pid
		sess.keySecret = binary.BigEndian.Uint32(b[4:])
		r.m[pid] = sess
		return
	}
}

func (r *cancelRegistry) unregister(sess *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[sess.keyPID] == sess {
		delete(r.m, sess.keyPID)
	}
}

// lookup returns the session whose key matches, comparing the secret in
// constant time.
func (r *cancelRegistry) lookup(pid uint32, secret []byte) *session {
	r.mu.Lock()
	sess := r.m[pid]
	r.mu.Unlock()
	if sess == nil || len(secret) != 4 {
		return nil
	}
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], sess.keySecret)
	if subtle.ConstantTimeCompare(want[:], secret) != 1 {
		return nil
	}
	return sess
}
