package report

import (
	"fmt"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// WriteFile writes the report (as Marshal makes it) to path: atomically, and
// not at all when path already holds these bytes. It reports whether the
// file changed.
func (r *Report) WriteFile(path string) (changed bool, err error) {
	data, err := r.Marshal()
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return fsutil.WriteFile(path, data, 0o644)
}
