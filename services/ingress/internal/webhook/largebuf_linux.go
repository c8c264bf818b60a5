package webhook

import "syscall"

// mapAnonymous maps size bytes of private anonymous memory outside the Go
// heap: zero pages the kernel backs only once written. Mappings are never
// unmapped, only reused, so no slice can outlive its memory.
func mapAnonymous(size int) ([]byte, error) {
	return syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// releasePages hands the pages holding the first used bytes of a mapped
// buffer back to the kernel; they read as zeros when next written.
func releasePages(b []byte, used int) {
	page := syscall.Getpagesize()
	if n := min((used+page-1)/page*page, len(b)); n > 0 {
		_ = syscall.Madvise(b[:n], syscall.MADV_DONTNEED)
	}
}
