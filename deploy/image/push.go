package image

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// push uploads idx (every platform's blobs, manifests, then the index)
// under the first tag and points the other tags at it. Credentials come
// from the Docker config (~/.docker/config.json, $DOCKER_CONFIG), as
// `docker login` leaves them.
func push(ctx context.Context, idx v1.ImageIndex, tags []name.Tag) error {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if err := remote.WriteIndex(tags[0], idx, opts...); err != nil {
		return fmt.Errorf("push %s: %w", tags[0], err)
	}
	for _, t := range tags[1:] {
		if err := remote.Tag(t, idx, opts...); err != nil {
			return fmt.Errorf("tag %s: %w", t, err)
		}
	}
	return nil
}
