package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kubearmor/kscmp/internal/fsutil"
)

// Annotations on index.json's entries that name the image.
const (
	// AnnotationContainerdName is the full name containerd (ctr images
	// import, Docker's containerd image store) files the image under.
	AnnotationContainerdName = "io.containerd.image.name"
	// AnnotationRefName is the OCI layout's name of the entry: the tag.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// DockerManifest is one entry of manifest.json, the file Docker's classic
// image store loads (docker load): one single-platform image each.
type DockerManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// WriteLayout writes idx as one tar file at path, atomically and only when
// its bytes changed, and returns the tar's size and whether it was written.
//
// The tar is an OCI image layout (oci-layout, index.json, blobs/sha256/…):
// index.json lists the image index once per tag, named with
// io.containerd.image.name (docker.io/library/kscmp:TAG) and
// org.opencontainers.image.ref.name (TAG), so `ctr images import
// --all-platforms` files every platform under each name; it also holds the
// manifest.json of Docker's classic store, whose `docker load` reads only
// that file and loads one image per entry (compressed layers are
// decompressed): one entry per platform, the first platform last, so that
// with no --platform the tags end on it (amd64), and `docker load
// --platform linux/arm64` loads only the arm64 one. Docker's containerd
// image store reads index.json, as ctr does. Entries are in a fixed order
// with fixed owners and mtimes (created): the tar is as reproducible as
// the index.
func WriteLayout(path string, idx v1.ImageIndex, tags []name.Tag, created time.Time) (int64, bool, error) {
	data, err := layoutTar(idx, tags, created)
	if err != nil {
		return 0, false, fmt.Errorf("image tarball %s: %w", path, err)
	}
	written, err := fsutil.WriteFile(path, data, 0o644)
	if err != nil {
		return 0, false, err
	}
	return int64(len(data)), written, nil
}

// layoutTar returns the tar's bytes.
func layoutTar(idx v1.ImageIndex, tags []name.Tag, created time.Time) ([]byte, error) {
	blobs := map[v1.Hash][]byte{}
	rawIdx, err := idx.RawManifest()
	if err != nil {
		return nil, err
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	blobs[idxDigest] = rawIdx
	docker, err := collectImages(idx, tags, blobs)
	if err != nil {
		return nil, err
	}
	top := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, t := range tags {
		top.Manifests = append(top.Manifests, v1.Descriptor{
			MediaType: types.OCIImageIndex,
			Digest:    idxDigest,
			Size:      int64(len(rawIdx)),
			Annotations: map[string]string{
				AnnotationContainerdName: fullName(t),
				AnnotationRefName:        t.TagStr(),
			},
		})
	}
	indexJSON, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	manifestJSON, err := json.Marshal(docker)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []tarEntry{
		{name: "oci-layout", mode: 0o644, data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{name: "index.json", mode: 0o644, data: indexJSON},
		{name: "manifest.json", mode: 0o644, data: manifestJSON},
		{name: "blobs/", mode: 0o755},
		{name: "blobs/sha256/", mode: 0o755},
	}
	digests := make([]v1.Hash, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Slice(digests, func(i, j int) bool { return digests[i].String() < digests[j].String() })
	for _, d := range digests {
		files = append(files, tarEntry{name: blobPath(d), mode: 0o644, data: blobs[d]})
	}
	for _, f := range files {
		if err := writeEntry(tw, f, created); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// collectImages adds every platform image's manifest, config and layers
// to blobs and returns manifest.json's entries.
func collectImages(idx v1.ImageIndex, tags []name.Tag, blobs map[v1.Hash][]byte) ([]DockerManifest, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var repoTags []string
	for _, t := range tags {
		repoTags = append(repoTags, fullName(t))
	}
	var docker []DockerManifest
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, err
		}
		blobs[desc.Digest] = raw
		cfgName, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		if blobs[cfgName], err = img.RawConfigFile(); err != nil {
			return nil, err
		}
		dm := DockerManifest{Config: blobPath(cfgName), RepoTags: repoTags}
		layers, err := img.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return nil, err
			}
			if _, ok := blobs[d]; !ok {
				rc, err := l.Compressed()
				if err != nil {
					return nil, err
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return nil, fmt.Errorf("layer %s: %w", d, err)
				}
				blobs[d] = b
			}
			dm.Layers = append(dm.Layers, blobPath(d))
		}
		// The first platform last: Docker's classic store tags each
		// entry in turn, so the last one keeps the tags.
		docker = append([]DockerManifest{dm}, docker...)
	}
	return docker, nil
}

// blobPath is where the OCI layout keeps blob d.
func blobPath(d v1.Hash) string { return "blobs/" + d.Algorithm + "/" + d.Hex }

// writeEntry writes one file or directory owned by root with mtime
// created.
func writeEntry(tw *tar.Writer, e tarEntry, created time.Time) error {
	h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: created, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
	switch {
	case e.name[len(e.name)-1] == '/':
		h.Typeflag, h.Size = tar.TypeDir, 0
	case e.link != "":
		h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, e.link
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar entry %s: %w", e.name, err)
	}
	if _, err := tw.Write(e.data); err != nil {
		return fmt.Errorf("tar entry %s: %w", e.name, err)
	}
	return nil
}
