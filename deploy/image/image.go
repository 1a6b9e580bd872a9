// Package image builds kscmp's container image without a Docker daemon: the
// static kscmp binary of each platform (go build, CGO_ENABLED=0, -trimpath)
// on an empty base with only /etc/passwd and /etc/group, as an OCI image
// index for linux/amd64 and linux/arm64.
//
// The image is reproducible: every byte follows from the source tree, the Go
// toolchain and the Options (the creation time comes from the commit, not
// the clock; layer tars have fixed owners, modes and mtimes and a fixed
// order), so the same commit gives the same index digest. It is written as
// one tarball that `ctr images import` and `docker load` take (see
// WriteLayout) and can be pushed to a registry (Options.Push).
//
// Users: the image runs as kscmp (65532:65532) unless the pod says
// otherwise. The webhook and the read-only commands (validate, merge,
// recommend) need nothing more; the agent writes the kubelet's seccomp
// directory, which belongs to root, so its DaemonSet sets runAsUser: 0
// (with every capability dropped but DAC_OVERRIDE, CHOWN and FOWNER), and
// discover needs root for eBPF.
package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Label keys of the OCI image spec's pre-defined annotations, set on every
// image config and on the index.
const (
	LabelSource      = "org.opencontainers.image.source"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelCreated     = "org.opencontainers.image.created"
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
)

// The image's user and where its binary lives.
const (
	// User is the image's default user, numeric so that the kubelet can
	// check runAsNonRoot without reading /etc/passwd.
	User = "65532:65532"
	// UserName is User's name in the image's /etc/passwd and /etc/group.
	UserName = "kscmp"
	// Entrypoint is the path of the kscmp binary in the image.
	Entrypoint = "/usr/local/bin/kscmp"
)

// Description is the image's org.opencontainers.image.description: which
// container runs as which user.
const Description = "kscmp: seccomp profiles from observed system calls. Runs as kscmp (65532) by default: " +
	"the webhook and validate/merge/recommend need no more. The agent (writes the kubelet's seccomp " +
	"directory, owned by root) and discover (eBPF) run as root: their pods set runAsUser: 0."

// ErrOptions is wrapped by every error about invalid Options.
var ErrOptions = errors.New("image options")

// Platform is an operating system and CPU architecture the image is built
// for, in Go's names (GOOS, GOARCH), which are also the OCI names for these.
type Platform struct {
	OS   string
	Arch string
}

// String returns "os/arch".
func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatform parses "os/arch".
func ParsePlatform(s string) (Platform, error) {
	osName, arch, ok := strings.Cut(s, "/")
	if !ok || osName == "" || arch == "" || strings.Contains(arch, "/") {
		return Platform{}, fmt.Errorf("%w: platform %q: want os/arch, e.g. linux/arm64", ErrOptions, s)
	}
	return Platform{OS: osName, Arch: arch}, nil
}

// DefaultPlatforms are the platforms of the published image. The first is
// the one that `docker load` tags when it loads every platform (see
// WriteLayout).
var DefaultPlatforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}}

// Options say what Build builds and where it goes.
type Options struct {
	// ModuleDir is the module's root directory, where go build runs.
	ModuleDir string
	// Package is the main package to build; default ./cmd/kscmp.
	Package string
	// BinDir receives each platform's binary as BinDir/OS-ARCH/kscmp.
	BinDir string
	// GoTool is the go command; default "go" from PATH, else GOROOT's.
	GoTool string
	// Platforms to build; default DefaultPlatforms.
	Platforms []Platform

	// Version is linked into the binary (main.version) and labelled.
	Version string
	// Revision is the source's commit, labelled.
	Revision string
	// Source is the source repository's URL, labelled.
	Source string
	// Created is the image's creation time: the commit's time
	// (SOURCE_DATE_EPOCH), so that a rebuild gives the same digest.
	Created time.Time

	// Repository names the image, e.g. "kscmp" or "ghcr.io/org/kscmp".
	Repository string
	// Tags of the image in Repository; at least one.
	Tags []string

	// Output is the tarball to write (WriteLayout); "" writes none.
	Output string
	// Push pushes the index to Repository under every tag.
	Push bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// PlatformResult is what Build made for one platform.
type PlatformResult struct {
	Platform Platform
	// Manifest is the digest of the platform's image manifest.
	Manifest v1.Hash
	// Binary is the binary's path (in Options.BinDir) and size in bytes.
	Binary     string
	BinarySize int64
	// LayerSize is the compressed size of the binary's layer, and
	// ImageSize the compressed size of all of the platform's layers.
	LayerSize int64
	ImageSize int64
}

// Result is what Build made.
type Result struct {
	// Index is the image index's digest: the image's identity.
	Index v1.Hash
	// Names are the image's full names, one per tag.
	Names     []string
	Platforms []PlatformResult
	// OutputSize is the tarball's size; Written says whether it was
	// written (false: it already held these bytes).
	OutputSize int64
	Written    bool
}

// Build builds the binaries, the images and the index, then writes the
// tarball and pushes as Options say.
func Build(ctx context.Context, o Options) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	tags, err := o.tags()
	if err != nil {
		return nil, err
	}
	base, err := baseLayer(o.Created)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var images []platformImage
	for _, p := range o.Platforms {
		bin, err := goBuild(ctx, o, p)
		if err != nil {
			return nil, err
		}
		img, pr, err := buildPlatform(o, p, base, bin)
		if err != nil {
			return nil, err
		}
		images = append(images, platformImage{p, img})
		res.Platforms = append(res.Platforms, *pr)
		o.logf("%s: manifest %s, binary %d bytes, layers %d bytes compressed", p, pr.Manifest, pr.BinarySize, pr.ImageSize)
	}
	idx, err := buildIndex(o, images)
	if err != nil {
		return nil, err
	}
	if res.Index, err = idx.Digest(); err != nil {
		return nil, fmt.Errorf("image index digest: %w", err)
	}
	for _, t := range tags {
		res.Names = append(res.Names, fullName(t))
	}
	if o.Output != "" {
		if res.OutputSize, res.Written, err = WriteLayout(o.Output, idx, tags, o.Created); err != nil {
			return nil, err
		}
	}
	if o.Push {
		if err := push(ctx, idx, tags); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// withDefaults fills the defaults in and checks what has none.
func (o Options) withDefaults() (Options, error) {
	if o.Package == "" {
		o.Package = "./cmd/kscmp"
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	if o.ModuleDir == "" {
		o.ModuleDir = "."
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.BinDir == "":
		return o, fmt.Errorf("%w: BinDir is empty", ErrOptions)
	case o.Version == "":
		return o, fmt.Errorf("%w: Version is empty", ErrOptions)
	case o.Repository == "":
		return o, fmt.Errorf("%w: Repository is empty (push needs a registry, e.g. REGISTRY=ghcr.io/you)", ErrOptions)
	case len(o.Tags) == 0:
		return o, fmt.Errorf("%w: no tag", ErrOptions)
	case o.Created.IsZero() || o.Created.Unix() < 0:
		return o, fmt.Errorf("%w: Created %v: want the commit's time (SOURCE_DATE_EPOCH)", ErrOptions, o.Created)
	case o.Output == "" && !o.Push:
		return o, fmt.Errorf("%w: neither Output nor Push: nothing to do", ErrOptions)
	}
	o.Created = o.Created.UTC().Truncate(time.Second)
	return o, nil
}

// tags parses Repository:tag for every tag.
func (o Options) tags() ([]name.Tag, error) {
	var out []name.Tag
	for _, t := range o.Tags {
		tag, err := name.NewTag(o.Repository + ":" + t)
		if err != nil {
			return nil, fmt.Errorf("%w: image name %q: %v", ErrOptions, o.Repository+":"+t, err)
		}
		out = append(out, tag)
	}
	return out, nil
}

// fullName is the name containerd and Docker file an image under:
// docker.io/library/kscmp:tag for the short name kscmp:tag (what the
// kubelet asks containerd for when a pod says image: kscmp:tag).
func fullName(t name.Tag) string {
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + t.RepositoryStr() + ":" + t.TagStr()
}

func (o Options) logf(format string, args ...any) {
	fmt.Fprintf(o.Log, "kscmp-image: "+format+"\n", args...)
}
