package raftfsm

import "encoding/binary"

// The Pebble key schema. Every key starts with one prefix byte.
// Changing a prefix or a key layout breaks existing data folders.
const (
	prefixMeta     = 'm' // m + name: FSM bookkeeping (applied index, format)
	prefixTenant   = 't' // t + tenant id -> tenantRecord
	prefixToken    = 'k' // k + sha256(secret) -> tokenRecord
	prefixTokenID  = 'K' // K + token id -> sha256(secret)
	prefixList     = 'l' // l + list id (8 bytes BE) -> listRecord
	prefixBatch    = 'b' // b + list id (8) + batch number (4 BE) -> upload id (16)
	prefixStaged   = 'u' // u + upload id (16) + chunk number (4 BE) -> encoded codes
	prefixUpload   = 'U' // U + upload id (16) -> uploadRecord
	prefixWithdraw = 'w' // w + list id (8) + position (4 BE) -> empty
	prefixMessage  = 'g' // g + tenant + 0 + message id -> messageRecord
	prefixSend     = 'S' // S + send number (4 BE) -> sendRecord
	prefixAssign   = 'a' // a + batch number (8 BE) -> assignBatch
	prefixNode     = 'n' // n + node id -> NodeInfo
	prefixAlert    = 'o' // o + alert id (8 BE) -> Alert: the low-stock outbox (alerts.go)
	prefixReleased = 'r' // r + assignment seq (8 BE) -> released at (release.go)
	prefixCopies   = 'c' // c + list id (8) + batch number (4 BE) -> positions copied back by a release
	prefixErasure  = 'h' // h + tenant -> the tenant's erasure key (erase.go)
)

// tenantScoped keys an object of a tenant; tenant ids hold no 0 byte.
func tenantScoped(prefix byte, tenant, id string) []byte {
	k := make([]byte, 0, 2+len(tenant)+len(id))
	k = append(k, prefix)
	k = append(k, tenant...)
	k = append(k, 0)
	return append(k, id...)
}

var keyApplied = []byte{prefixMeta, 'a'}

func tenantKey(id string) []byte { return append([]byte{prefixTenant}, id...) }

func tokenKey(hash []byte) []byte { return append([]byte{prefixToken}, hash...) }

func tokenIDKey(id string) []byte { return append([]byte{prefixTokenID}, id...) }

// sendKey keys a send by its number: sends are numbered in order of
// creation, so a new send's record lands at the end of the key space,
// where the memtable inserts it without a search.
func sendKey(num uint32) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, 5), prefixSend), num)
}

func listKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixList}, id)
}

func batchKey(list uint64, n uint32) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 13), list)
	k = append([]byte{prefixBatch}, k...)
	return binary.BigEndian.AppendUint32(k, n)
}

func stagedKey(upload UploadID, chunk uint32) []byte {
	k := make([]byte, 0, 21)
	k = append(k, prefixStaged)
	k = append(k, upload[:]...)
	return binary.BigEndian.AppendUint32(k, chunk)
}

func uploadKey(upload UploadID) []byte {
	return append([]byte{prefixUpload}, upload[:]...)
}

func withdrawKey(list uint64, pos uint32) []byte {
	k := make([]byte, 0, 13)
	k = append(k, prefixWithdraw)
	k = binary.BigEndian.AppendUint64(k, list)
	return binary.BigEndian.AppendUint32(k, pos)
}

// prefixEnd returns the smallest key greater than every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
