// Package host installs merged profiles on machines without Kubernetes:
// systemd drop-ins for services (Systemd) and profile files for containers
// that docker, podman, runc or crun start by hand (Dir).
//
// Both installers take the full set of policies, compute every file first
// (the shared merger, then the compiler of the target), check all of them,
// and only then write: bad input changes nothing. Writes are atomic and
// skipped when the content is already there. Files that kscmp did not write
// are never overwritten nor removed. Every path is resolved inside the
// installer's root (internal/safepath), every unit and container name is
// checked (api.ValidUnitName, api.ValidContainerName) before it becomes a
// path, and every run that writes first removes the temporary files that
// killed runs left.
package host

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/kubearmor/kscmp/api"
)

// Action says what an installer did (or, in a dry run, would do) with a file.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Removed   Action = "removed"
	Absent    Action = "absent" // remove: there was nothing to remove
)

// Change is one file an installer wrote, removed or left as it was.
type Change struct {
	// Target is the systemd unit or the container name.
	Target string `json:"target"`
	// Path is the file, with the installer's root prefix.
	Path   string `json:"path"`
	Action Action `json:"action"`
	// Policies are the keys (namespace/name) of the policies merged into
	// the file.
	Policies []string `json:"policies,omitempty"`
	// Restarted is true when the unit was restarted afterwards.
	Restarted bool `json:"restarted,omitempty"`
}

// planned returns the Change that writing data to path makes, given what
// path holds now (old, when exists).
func planned(target, path string, policies []string, old, data []byte, exists bool) Change {
	c := Change{Target: target, Path: path, Action: Created, Policies: policies}
	switch {
	case exists && bytes.Equal(old, data):
		c.Action = Unchanged
	case exists:
		c.Action = Updated
	}
	return c
}

// Changed reports whether the file was written or removed.
func (c Change) Changed() bool {
	return c.Action == Created || c.Action == Updated || c.Action == Removed
}

// Options are what Apply and Remove take besides the policies.
type Options struct {
	// Targets restricts the run to these units or container names; empty
	// means every target the policies select.
	Targets []string
	// Prune (Apply) removes kscmp's files for targets no policy selects any
	// more: the policies given are then the whole desired state.
	Prune bool
	// DryRun computes and checks everything and writes nothing.
	DryRun bool
	// Restart (systemd on a live system) restarts every unit whose drop-in
	// changed, so the service runs under the new filter.
	Restart bool
}

// Units returns the systemd units that policies select, with the
// ".service" suffix, sorted.
func Units(policies []*api.KubeArmorSeccompPolicy) []string {
	var units []string
	for _, p := range policies {
		for _, u := range p.Spec.Selector.SystemdUnits {
			units = append(units, api.UnitName(u))
		}
	}
	slices.Sort(units)
	return slices.Compact(units)
}

// ContainerNames returns the host container names that policies select,
// sorted.
func ContainerNames(policies []*api.KubeArmorSeccompPolicy) []string {
	var names []string
	for _, p := range policies {
		names = append(names, p.Spec.Selector.ContainerNames...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// restrict returns the targets in want (all when want is empty), failing on
// a wanted target no policy selects.
func restrict(selected, want []string, norm func(string) string, what string) ([]string, error) {
	if len(want) == 0 {
		return selected, nil
	}
	var out []string
	for _, w := range want {
		w = norm(w)
		if !slices.Contains(selected, w) {
			return nil, &NoPolicyError{Target: what + " " + w}
		}
		out = append(out, w)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// NoPolicyError is returned when no policy selects a target that was asked
// for.
type NoPolicyError struct{ Target string }

func (e *NoPolicyError) Error() string { return fmt.Sprintf("no policy selects %s", e.Target) }
