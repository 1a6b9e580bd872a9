package testenv

import (
	"sync"
	"testing"
)

// Parallel runs fn(0) … fn(n-1), width at a time, and fails tb with the
// first error once all have returned: the set-up of the benchmarks that
// create thousands of objects on a real API server.
func Parallel(tb testing.TB, n, width int, fn func(i int) error) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, width)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}
