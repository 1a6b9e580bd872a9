package image

import (
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxApplets are the commands the busybox image links to /bin/busybox
// in /bin: a shell and what tests and demos run in a pod.
var BusyboxApplets = []string{
	"cat", "echo", "env", "false", "grep", "hostname", "id", "ls", "mkdir",
	"nc", "ps", "rm", "sh", "sleep", "touch", "true", "wget",
}

// BusyboxOptions say what WriteBusybox builds.
type BusyboxOptions struct {
	// Binary is a statically linked busybox (Debian's busybox-static:
	// /bin/busybox) built for Platform.
	Binary   string
	Platform Platform
	// Repository and Tag name the image, e.g. localhost/busybox:latest.
	Repository string
	Tag        string
	// Created is the image's creation time (any fixed time: the same
	// binary then gives the same digest).
	Created time.Time
	// Output is the tarball to write (see WriteLayout).
	Output string
	// Cmd is the image's command; default sh. The local cluster's
	// sandbox (pause) image is this image with Cmd sleep.
	Cmd []string
}

// WriteBusybox writes a one-platform image index of a static busybox at
// /bin/busybox with BusyboxApplets linked to it, /etc/passwd and
// /etc/group (root and kscmp, as kscmp's image), running sh as root by
// default (Cmd). It is the small image the local cluster (hack/cluster.sh) and
// its tests run pods from without a registry. It returns the index's
// digest and whether the tarball was (re)written.
func WriteBusybox(o BusyboxOptions) (v1.Hash, bool, error) {
	if o.Binary == "" || o.Repository == "" || o.Tag == "" || o.Output == "" || o.Created.IsZero() {
		return v1.Hash{}, false, fmt.Errorf("%w: busybox image: Binary, Repository, Tag, Output and Created are required", ErrOptions)
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("busybox image: %w", err)
	}
	created := o.Created.UTC().Truncate(time.Second)
	if len(o.Cmd) == 0 {
		o.Cmd = []string{"sh"}
	}
	entries := []tarEntry{{name: "bin/", mode: 0o755}, {name: "bin/busybox", mode: 0o755, data: bin}}
	for _, a := range BusyboxApplets {
		entries = append(entries, tarEntry{name: "bin/" + a, mode: 0o777, link: "busybox"})
	}
	entries = append(entries, tarEntry{name: "tmp/", mode: 0o1777})
	base, err := baseLayer(created)
	if err != nil {
		return v1.Hash{}, false, err
	}
	bbLayer, err := layer(entries, created)
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("busybox image: layer: %w", err)
	}
	cfg := &v1.ConfigFile{
		Architecture: o.Platform.Arch, OS: o.Platform.OS, Created: v1.Time{Time: created},
		Config: v1.Config{Cmd: o.Cmd, Env: []string{"PATH=/bin"}, WorkingDir: "/"},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("busybox image: config: %w", err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: base}, mutate.Addendum{Layer: bbLayer}); err != nil {
		return v1.Hash{}, false, fmt.Errorf("busybox image: layers: %w", err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{
		Add: img,
		Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: o.Platform.OS, Architecture: o.Platform.Arch},
		},
	})
	tags, err := Options{Repository: o.Repository, Tags: []string{o.Tag}}.tags()
	if err != nil {
		return v1.Hash{}, false, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("busybox image: digest: %w", err)
	}
	_, written, err := WriteLayout(o.Output, idx, tags, created)
	return digest, written, err
}
