package host

import (
	"errors"
	"io/fs"

	"github.com/kubearmor/kscmp/internal/safepath"
)

// session is one Apply or Remove: the root every path is resolved in
// (safepath), and the lock on the directory the installer manages, which
// keeps two runs from interleaving — one's cleanup of leftovers would
// remove the other's temporary files.
type session struct {
	dir    string         // the root ("" is "/")
	r      *safepath.Root // nil while the root does not exist
	unlock func()         // nil while not locked
}

// begin opens the root, which may not exist yet (then r is nil: nothing is
// in it).
func begin(root string) (*session, error) {
	s := &session{dir: root}
	r, err := safepath.Open(root)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	s.r = r
	return s, err
}

// lock locks the directory rel below the root, once. With create the root
// and rel are created first; without, a directory that does not exist is
// not locked (nothing in it to protect).
func (s *session) lock(rel string, create bool) error {
	if s.unlock != nil {
		return nil
	}
	if create && s.r == nil {
		r, err := safepath.OpenOrCreate(s.dir)
		if err != nil {
			return err
		}
		s.r = r
	}
	if s.r == nil {
		return nil
	}
	if create {
		d, err := s.r.MkdirAll(rel)
		if err != nil {
			return err
		}
		d.Close()
	}
	unlock, err := s.r.Lock(rel)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return nil
	}
	s.unlock = unlock
	return err
}

// end unlocks and closes the root.
func (s *session) end() {
	if s.unlock != nil {
		s.unlock()
	}
	if s.r != nil {
		s.r.Close()
	}
}
