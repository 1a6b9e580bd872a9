package image

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// platformView is one platform's image as read back from the tarball.
type platformView struct {
	desc     v1.Descriptor
	manifest v1.Manifest
	config   v1.ConfigFile
	files    map[string]layerFile // all layers' entries
}

// layoutView is the tarball read back with nothing of the builder: plain
// tar, gzip and JSON.
type layoutView struct {
	top       v1.IndexManifest // index.json
	index     v1.IndexManifest // the image index it names
	platforms map[string]platformView
	docker    []DockerManifest // manifest.json
	files     map[string][]byte
}

func readLayout(t *testing.T, data []byte) *layoutView {
	t.Helper()
	hdrs, files := layoutFiles(t, data)
	var names []string
	for _, h := range hdrs {
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(testCreated) {
			t.Errorf("tarball entry %s: uid %d gid %d mtime %v; want 0 0 %v", h.Name, h.Uid, h.Gid, h.ModTime, testCreated)
		}
		names = append(names, h.Name)
	}
	if len(names) < 3 || !slices.Equal(names[:3], []string{"oci-layout", "index.json", "manifest.json"}) {
		t.Errorf("tarball starts with %q", names[:min(3, len(names))])
	}
	if blobs := names[5:]; !slices.IsSorted(blobs) {
		t.Errorf("blobs not in order: %q", blobs)
	}
	v := &layoutView{platforms: map[string]platformView{}, files: files}
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %s", got)
	}
	unmarshal(t, "index.json", files["index.json"], &v.top)
	unmarshal(t, "manifest.json", files["manifest.json"], &v.docker)
	if len(v.top.Manifests) == 0 {
		t.Fatal("index.json lists nothing")
	}
	unmarshal(t, "image index", blob(t, files, v.top.Manifests[0].Digest), &v.index)
	for _, d := range v.index.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		pv := platformView{desc: d, files: map[string]layerFile{}}
		unmarshal(t, "manifest "+d.Platform.String(), blob(t, files, d.Digest), &pv.manifest)
		unmarshal(t, "config "+d.Platform.String(), blob(t, files, pv.manifest.Config.Digest), &pv.config)
		for i, l := range pv.manifest.Layers {
			gz := blob(t, files, l.Digest)
			lf := layerFiles(t, gz)
			for n, f := range lf {
				pv.files[n] = f
			}
			if i < len(pv.config.RootFS.DiffIDs) {
				uncompressed := gunzip(t, gz)
				if sum := fmt.Sprintf("%x", sha256.Sum256(uncompressed)); sum != pv.config.RootFS.DiffIDs[i].Hex {
					t.Errorf("%s layer %d: diff_id %s, the layer hashes to %s", d.Platform, i, pv.config.RootFS.DiffIDs[i], sum)
				}
			}
		}
		v.platforms[d.Platform.String()] = pv
	}
	return v
}

// TestLayout reads the tarball back: an OCI layout whose index.json names
// the image index once per tag (for ctr), an index of linux/amd64 and
// linux/arm64 whose images carry the labels, the user and the entrypoint,
// layers of root-owned files, Docker's manifest.json, and an entrypoint
// that runs.
func TestLayout(t *testing.T) {
	res, data := built(t)
	v := readLayout(t, data)

	wantNames := []string{"docker.io/library/kscmp:" + testVersion, "docker.io/library/kscmp:latest"}
	var names []string
	for _, m := range v.top.Manifests {
		if m.MediaType != types.OCIImageIndex || m.Digest != res.Index {
			t.Errorf("index.json entry %s %s; want %s %s", m.MediaType, m.Digest, types.OCIImageIndex, res.Index)
		}
		names = append(names, m.Annotations[AnnotationContainerdName])
		if tag := m.Annotations[AnnotationRefName]; !strings.HasSuffix(m.Annotations[AnnotationContainerdName], ":"+tag) {
			t.Errorf("index.json entry %s: ref.name %q", m.Annotations[AnnotationContainerdName], tag)
		}
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("index.json names %q, want %q", names, wantNames)
	}

	var platforms []string
	for _, d := range v.index.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("image index platforms %q", platforms)
	}
	wantLabels := map[string]string{
		LabelSource:   testSource,
		LabelVersion:  testVersion,
		LabelRevision: testRevision,
		LabelCreated:  "2023-11-14T22:13:20Z",
	}
	for k, want := range wantLabels {
		if got := v.index.Annotations[k]; got != want {
			t.Errorf("index annotation %s = %q, want %q", k, got, want)
		}
	}
	for _, p := range platforms {
		checkPlatformImage(t, p, v.platforms[p], wantLabels)
	}
	checkDockerManifest(t, v)
	checkEntrypointRuns(t, v.platforms["linux/amd64"])
}

// checkPlatformImage checks one platform's config and files.
func checkPlatformImage(t *testing.T, p string, pv platformView, wantLabels map[string]string) {
	t.Helper()
	cfg := pv.config
	if cfg.OS+"/"+cfg.Architecture != p {
		t.Errorf("%s: config says %s/%s", p, cfg.OS, cfg.Architecture)
	}
	if !cfg.Created.Time.Equal(testCreated) {
		t.Errorf("%s: created %v", p, cfg.Created)
	}
	for k, want := range wantLabels {
		if got := cfg.Config.Labels[k]; got != want {
			t.Errorf("%s: label %s = %q, want %q", p, k, got, want)
		}
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("%s: user %q, want 65532:65532 (numeric: runAsNonRoot)", p, cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/kscmp"}) {
		t.Errorf("%s: entrypoint %q", p, cfg.Config.Entrypoint)
	}
	if pv.manifest.MediaType != types.OCIManifestSchema1 || pv.manifest.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("%s: media types %s, %s", p, pv.manifest.MediaType, pv.manifest.Config.MediaType)
	}
	var files []string
	for n := range pv.files {
		files = append(files, n)
	}
	slices.Sort(files)
	want := []string{"etc/", "etc/group", "etc/passwd", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/kscmp"}
	if !slices.Equal(files, want) {
		t.Errorf("%s: files %q, want %q", p, files, want)
	}
	if !strings.Contains(string(pv.files["etc/passwd"].data), "\nkscmp:x:65532:65532:") ||
		!strings.HasPrefix(string(pv.files["etc/passwd"].data), "root:x:0:0:") {
		t.Errorf("%s: /etc/passwd:\n%s", p, pv.files["etc/passwd"].data)
	}
	if !strings.Contains(string(pv.files["etc/group"].data), "kscmp:x:65532:") {
		t.Errorf("%s: /etc/group:\n%s", p, pv.files["etc/group"].data)
	}
	if m := pv.files["usr/local/bin/kscmp"].hdr.Mode; m != 0o755 {
		t.Errorf("%s: kscmp mode %o", p, m)
	}
}

// checkDockerManifest: one entry per platform, the first platform (amd64)
// last, every path in the tarball.
func checkDockerManifest(t *testing.T, v *layoutView) {
	t.Helper()
	if len(v.docker) != 2 {
		t.Fatalf("manifest.json has %d entries, want 2", len(v.docker))
	}
	amd := v.platforms["linux/amd64"]
	if last := v.docker[1]; last.Config != blobPath(amd.manifest.Config.Digest) {
		t.Errorf("manifest.json's last entry is %s, want amd64's config %s", last.Config, amd.manifest.Config.Digest)
	}
	for _, e := range v.docker {
		if !slices.Contains(e.RepoTags, "docker.io/library/kscmp:latest") {
			t.Errorf("manifest.json entry %s: tags %q", e.Config, e.RepoTags)
		}
		for _, p := range append([]string{e.Config}, e.Layers...) {
			if _, ok := v.files[p]; !ok {
				t.Errorf("manifest.json names %s, not in the tarball", p)
			}
		}
	}
}

// checkEntrypointRuns runs the amd64 image's entrypoint, taken from its
// layer, with `version`.
func checkEntrypointRuns(t *testing.T, pv platformView) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kscmp")
	if err := os.WriteFile(bin, pv.files[strings.TrimPrefix(pv.config.Config.Entrypoint[0], "/")].data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil || string(out) != "kscmp "+testVersion+"\n" {
		t.Errorf("entrypoint version: %v: %q", err, out)
	}
}
