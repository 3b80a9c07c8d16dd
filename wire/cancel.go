package wire

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
)

// cancelRegistry maps the cancel keys the proxy hands to clients
// (BackendKeyData) to their sessions. The secrets are the proxy's own: a
// client never sees a backend's secret, so it cannot cancel a statement of
// another client that shares the backend connection later.
//
// The process id is the backend's real one in session pooling, where a
// client has one backend for its whole session (so pg_backend_pid(), a
// notification's sender and pg_terminate_backend agree with it), and a
// random one in transaction pooling, where no single backend is the
// client's. Keys are looked up by process id and secret together, so two
// sessions may share a process id (two servers, or a reused pid).
type cancelRegistry struct {
	mu sync.Mutex
	m  map[uint64]*session
}

func cancelKey(pid, secret uint32) uint64 { return uint64(pid)<<32 | uint64(secret) }

// register gives sess a key: backendPID (0 for none) with a fresh random
// secret, or a random process id as well. With a peer id configured, the id
// goes into the process id's top bits of a random process id, or into the
// secret's top bits with a backend's process id (see forwardCancel).
func (r *cancelRegistry) register(sess *session, backendPID uint32) {
	var b [8]byte
	peer := sess.srv.cfg.PeerID
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[uint64]*session)
	}
	for {
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		secret := binary.BigEndian.Uint32(b[4:])
		if backendPID != 0 && backendPID>>peerShift == 0 {
			pid = backendPID
			if peer > 0 {
				secret = uint32(peer)<<peerSecretShift | secret&(1<<peerSecretShift-1)
			}
		} else {
			pid = withPeerID(pid, peer) // the proxy instance's id: see wire/server.go
		}
		k := cancelKey(pid, secret)
		if pid == 0 || r.m[k] != nil {
			continue
		}
		sess.keyPID, sess.keySecret = pid, secret
		r.m[k] = sess
		return
	}
}

func (r *cancelRegistry) unregister(sess *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := cancelKey(sess.keyPID, sess.keySecret)
	if r.m[k] == sess {
		delete(r.m, k)
	}
}

// lookup returns the session whose key matches. The map is keyed by the
// secret too; the constant-time comparison keeps the check itself from
// telling how much of a guessed secret was right.
func (r *cancelRegistry) lookup(pid uint32, secret []byte) *session {
	if len(secret) != 4 {
		return nil
	}
	r.mu.Lock()
	sess := r.m[cancelKey(pid, binary.BigEndian.Uint32(secret))]
	r.mu.Unlock()
	if sess == nil {
		return nil
	}
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], sess.keySecret)
	if subtle.ConstantTimeCompare(want[:], secret) != 1 {
		return nil
	}
	return sess
}
