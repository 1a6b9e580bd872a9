package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kubearmor/kscmp/internal/testenv"
)

// The options every test builds with: fixed, so that two builds must agree.
const (
	testVersion  = "v0.0.0-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	testSource   = "https://github.com/kubearmor/kscmp"
)

var testCreated = time.Unix(1700000000, 0).UTC()

func testOptions(t *testing.T, dir string) Options {
	return Options{
		ModuleDir:  testenv.ModuleRoot(t),
		BinDir:     filepath.Join(dir, "bin"),
		Version:    testVersion,
		Revision:   testRevision,
		Source:     testSource,
		Created:    testCreated,
		Repository: "kscmp",
		Tags:       []string{testVersion, "latest"},
		Output:     filepath.Join(dir, "kscmp-image.tar"),
	}
}

// shared is the image most tests look at, built once per test binary.
var shared struct {
	once sync.Once
	dir  string
	res  *Result
	tar  []byte
	err  error
}

// built returns the shared build's result and tarball.
func built(t *testing.T) (*Result, []byte) {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "kscmp-image-test-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		o := testOptions(t, shared.dir)
		if shared.res, shared.err = Build(ctx, o); shared.err != nil {
			return
		}
		shared.tar, shared.err = os.ReadFile(o.Output)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.res, shared.tar
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// TestReproducible builds the image a second time, into other directories
// (new binaries with new mtimes), and wants the same index digest and the
// same tarball, byte for byte.
func TestReproducible(t *testing.T) {
	res, data := built(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	o := testOptions(t, t.TempDir())
	res2, err := Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Index != res.Index {
		t.Errorf("second build: index %s, first %s", res2.Index, res.Index)
	}
	data2, err := os.ReadFile(o.Output)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, data2) {
		t.Errorf("second build: tarball sha256 %x, first %x", sha256.Sum256(data2), sha256.Sum256(data))
	}
	t.Logf("index %s, tarball %d bytes sha256 %x", res.Index, len(data), sha256.Sum256(data))
}

// TestCreatedInDigest: the creation time is part of the image (a build
// from another commit time is another image), so the build cannot be
// taking it from anywhere else.
func TestCreatedInDigest(t *testing.T) {
	res, _ := built(t)
	o := testOptions(t, t.TempDir())
	o.Created = testCreated.Add(time.Second)
	idx := indexOf(t, o, res)
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d == res.Index {
		t.Errorf("created %v and %v: the same index %s", testCreated, o.Created, d)
	}
}

// indexOf makes the index of o from the binaries of res, without go build.
func indexOf(t *testing.T, o Options, res *Result) v1.ImageIndex {
	t.Helper()
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	base, err := baseLayer(o.Created)
	if err != nil {
		t.Fatal(err)
	}
	var images []platformImage
	for _, p := range res.Platforms {
		img, _, err := buildPlatform(o, p.Platform, base, p.Binary)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, platformImage{p.Platform, img})
	}
	idx, err := buildIndex(o, images)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// TestPush pushes the index to a registry (go-containerregistry's, in
// this process) and pulls it back under both tags: the same digest, both
// platforms.
func TestPush(t *testing.T) {
	res, _ := built(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	o := testOptions(t, t.TempDir())
	o.Repository = strings.TrimPrefix(srv.URL, "http://") + "/kubearmor/kscmp"
	tags, err := o.tags()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := push(ctx, indexOf(t, o, res), tags); err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		idx, err := remote.Index(tag, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pull %s: %v", tag, err)
		}
		d, err := idx.Digest()
		if err != nil || d != res.Index {
			t.Errorf("pull %s: digest %s (%v), pushed %s", tag, d, err, res.Index)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			if _, err := remote.Image(tag.Context().Digest(m.Digest.String()), remote.WithContext(ctx)); err != nil {
				t.Errorf("pull %s %s: %v", tag, m.Platform, err)
			}
		}
	}
}

// layoutFiles reads the tarball: its entries in order, and their contents.
func layoutFiles(t *testing.T, data []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hdrs []*tar.Header
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		files[h.Name] = b
	}
	return hdrs, files
}

// blob returns the blob of digest d, and checks that it hashes to d.
func blob(t *testing.T, files map[string][]byte, d v1.Hash) []byte {
	t.Helper()
	b, ok := files["blobs/sha256/"+d.Hex]
	if !ok {
		t.Fatalf("blob %s is not in the tarball", d)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		t.Fatalf("blob %s hashes to %x", d, sum)
	}
	return b
}

func unmarshal(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, b)
	}
}

// layerFile is one entry of a layer.
type layerFile struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles returns the entries of a gzip-compressed layer, and checks
// that they belong to root and carry the creation time.
func layerFiles(t *testing.T, gz []byte) map[string]layerFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]layerFile{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(testCreated) {
			t.Errorf("layer entry %s: uid %d gid %d mtime %v; want 0 0 %v", h.Name, h.Uid, h.Gid, h.ModTime, testCreated)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = layerFile{h, b}
	}
	return out
}

func gunzip(t *testing.T, gz []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOptionsRefused: options that cannot make a reproducible, named image
// are refused before anything is built, each with ErrOptions and the field.
func TestOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.Repository = "" }, "Repository"},
		{func(o *Options) { o.Created = time.Time{} }, "Created"},
		{func(o *Options) { o.Version = "" }, "Version"},
		{func(o *Options) { o.Tags = nil }, "no tag"},
		{func(o *Options) { o.Tags = []string{"bad tag"} }, `"kscmp:bad tag"`},
		{func(o *Options) { o.Output, o.Push = "", false }, "nothing to do"},
	} {
		o := testOptions(t, t.TempDir())
		c.change(&o)
		_, err := Build(context.Background(), o)
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want ErrOptions naming %s, got %v", c.want, err)
		}
	}
	if _, err := ParsePlatform("linux"); !errors.Is(err, ErrOptions) {
		t.Errorf("ParsePlatform(linux): %v", err)
	}
}
