package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// platformImage is one platform's image, as the index lists it.
type platformImage struct {
	platform Platform
	image    v1.Image
}

// passwd and group: root for the agent (runAsUser: 0 finds its group 0
// here), kscmp for everything else.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		UserName + ":x:65532:65532:kscmp:/nonexistent:/sbin/nologin\n"
	group = "root:x:0:\n" + UserName + ":x:65532:\n"
)

// goBuild builds the static binary of platform p into
// BinDir/OS-ARCH/kscmp. The environment pins what would otherwise vary
// between machines (cgo, the amd64/arm64 feature levels) so that the same
// source and toolchain give the same bytes; -trimpath drops the paths of
// this checkout.
func goBuild(ctx context.Context, o Options, p Platform) (string, error) {
	dir := filepath.Join(o.BinDir, p.OS+"-"+p.Arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", p, err)
	}
	out := filepath.Join(dir, "kscmp")
	tmp := out + ".tmp"
	gotool, err := o.goTool()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gotool, "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+o.Version, "-o", tmp, o.Package)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build %s for %s in %s: %w\n%s", o.Package, p, o.ModuleDir, err, stderr.Bytes())
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("build %s: %w", p, err)
	}
	o.logf("%s: go build %s in %.1fs", p, out, time.Since(start).Seconds())
	return out, nil
}

// goTool is Options.GoTool, else go from PATH (go test puts its own
// GOROOT/bin first on the PATH of the tests, so they find it too).
func (o Options) goTool() (string, error) {
	if o.GoTool != "" {
		return o.GoTool, nil
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: no go command on PATH: set GoTool", ErrOptions)
	}
	return p, nil
}

// tarEntry is one file or directory of a layer.
type tarEntry struct {
	name string // without a leading slash; directories end in "/"
	mode int64
	data []byte
	link string // a symbolic link to this target (no data)
}

// layer makes a gzip-compressed layer of entries, in their order, each
// owned by root with mtime created: nothing of the build machine (owners,
// umask, clock) reaches the bytes. Go's gzip writer leaves the header's
// time and name empty, so the same entries compress to the same bytes.
func layer(entries []tarEntry, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := writeEntry(tw, e, created); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	gz := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// baseLayer holds /etc/passwd and /etc/group: the same for every platform,
// so a registry stores it once.
func baseLayer(created time.Time) (v1.Layer, error) {
	return layer([]tarEntry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
	}, created)
}

// binaryLayer holds the binary at Entrypoint.
func binaryLayer(bin []byte, created time.Time) (v1.Layer, error) {
	return layer([]tarEntry{
		{name: "usr/", mode: 0o755},
		{name: "usr/local/", mode: 0o755},
		{name: "usr/local/bin/", mode: 0o755},
		{name: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, data: bin},
	}, created)
}

// labels are the image's OCI labels.
func labels(o Options) map[string]string {
	l := map[string]string{
		LabelVersion:     o.Version,
		LabelCreated:     o.Created.Format(time.RFC3339),
		LabelTitle:       "kscmp",
		LabelDescription: Description,
	}
	if o.Source != "" {
		l[LabelSource] = o.Source
	}
	if o.Revision != "" {
		l[LabelRevision] = o.Revision
	}
	return l
}

// buildPlatform makes platform p's image from the base layer and the
// binary at bin.
func buildPlatform(o Options, p Platform, base v1.Layer, bin string) (v1.Image, *PlatformResult, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", p, err)
	}
	binLayer, err := binaryLayer(data, o.Created)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: binary layer: %w", p, err)
	}
	cfg := &v1.ConfigFile{
		Architecture: p.Arch,
		OS:           p.OS,
		Created:      v1.Time{Time: o.Created},
		Config: v1.Config{
			Entrypoint: []string{Entrypoint},
			User:       User,
			Env:        []string{"PATH=/usr/local/bin"},
			WorkingDir: "/",
			Labels:     labels(o),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: config: %w", p, err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: o.Created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: "kscmp-image: /etc/passwd, /etc/group (root, kscmp 65532)"}},
		mutate.Addendum{Layer: binLayer, History: v1.History{Created: created, CreatedBy: "kscmp-image: CGO_ENABLED=0 go build -trimpath " + o.Package + " → " + Entrypoint}},
	)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: layers: %w", p, err)
	}
	pr := &PlatformResult{Platform: p, Binary: bin, BinarySize: int64(len(data))}
	if pr.Manifest, err = img.Digest(); err != nil {
		return nil, nil, fmt.Errorf("image %s: digest: %w", p, err)
	}
	if pr.LayerSize, err = binLayer.Size(); err != nil {
		return nil, nil, err
	}
	baseSize, err := base.Size()
	if err != nil {
		return nil, nil, err
	}
	pr.ImageSize = pr.LayerSize + baseSize
	return img, pr, nil
}

// buildIndex makes the OCI image index of images, in their order, with
// the same labels as annotations (registries show the index's).
func buildIndex(o Options, images []platformImage) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, pi := range images {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: pi.image,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: pi.platform.OS, Architecture: pi.platform.Arch},
			},
		})
	}
	withAnn, ok := mutate.Annotations(idx, labels(o)).(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("image index: annotations dropped the index type")
	}
	return withAnn, nil
}
