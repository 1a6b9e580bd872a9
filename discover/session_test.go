package discover

import (
	"context"
	"errors"
	"testing"
)

// TestDiscoverRefusesBadOptions: a MaxKeys out of range is the caller's
// mistake, refused before the recorder is loaded, and not reported as a
// system that cannot record (ErrUnsupported).
func TestDiscoverRefusesBadOptions(t *testing.T) {
	for _, k := range []int{-1, MaxKeysLimit + 1} {
		_, err := Discover(context.Background(), Options{Recorder: RecorderOptions{MaxKeys: k}})
		if err == nil || errors.Is(err, ErrUnsupported) {
			t.Errorf("MaxKeys %d: %v, want a refusal that is not ErrUnsupported", k, err)
		}
	}
}
