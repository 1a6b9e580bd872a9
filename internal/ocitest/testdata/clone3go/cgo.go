//go:build cgo

// With cgo the runtime starts its threads with pthread_create.

package main

import "C"
