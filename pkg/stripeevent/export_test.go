package stripeevent

// ParseSignatureHeader exposes the parsed header to the fuzz targets in
// package stripeevent_test. It reports the timestamp and how many v1 values
// the header carried.
func ParseSignatureHeader(header string) (timestamp int64, signatures int, err error) {
	h, err := ParseSignature(header)
	return h.timestamp, len(h.signatures) + h.skipped, err
}
