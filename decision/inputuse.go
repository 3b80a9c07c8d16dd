package decision

// InputUse is what the rules of one policy set can read of their input,
// found at load by walking every rule of the set (decision rules, row rules,
// helpers, whether or not the decision reaches them). A caller that
// memoizes decisions keys them by the input without the fields no rule can
// read: two inputs that differ only there get the same decision from the
// set, as long as it is Deterministic.
type InputUse struct {
	// Version is the set's Version.
	Version string
	// Deterministic is false when a rule calls a non-deterministic
	// built-in (time.now_ns, rand.intn, http.send, ...): the same input
	// may then get another decision.
	Deterministic bool
	// Paths are the input paths the rules reference, each cut at its
	// first part that is not a constant string; an empty path is the input
	// as a whole.
	Paths [][]string
}

// Reads reports whether a rule may read the input field at path, e.g.
// Reads("statement", "text"): some rule references it, a part of it
// (input.statement.text.x), or a document that contains it (input,
// input.statement, input.statement[k] with a variable k).
func (u *InputUse) Reads(path ...string) bool {
	for _, r := range u.Paths {
		n := min(len(r), len(path))
		same := true
		for i := 0; i < n; i++ {
			if r[i] != path[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}
