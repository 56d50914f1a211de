package raftfsm

import (
	"encoding/binary"
	"fmt"
)

// Low-stock alerts. The state machine decides, deterministically,
// when a list crosses its low-stock threshold and records an alert in the
// outbox, part of the replicated state; the leader delivers the outbox
// (daemon/webhook.go) and acknowledges each delivered alert with AckAlerts.
// Apply only ever writes the record: delivery never holds up an allocation.
//
// A crossing is a flip of the list's low_stock flag (threshold > 0 and
// available < threshold) from false to true on a list that existed before
// the command, whatever lowered it: an allocation, a reservation (a send's
// hold), a withdrawal, or a threshold raised above what is available. While
// the list stays low nothing more is recorded; it re-arms when low_stock
// turns false again (a top-up, a released hold, a lower threshold or
// threshold 0), and the next flip records a new alert. A list created below
// its threshold (or imported into while below it) never crossed it: no alert.

// MaxPendingAlerts bounds the outbox. When an alert would exceed it, the
// oldest pending alert of the same list is dropped (the new one tells the
// same story with newer numbers), or, if the list has none pending, the
// oldest pending alert of all.
const MaxPendingAlerts = 4096

// AlertType says what an alert tells.
type AlertType uint8

const (
	// AlertLowStock: the list crossed its low-stock threshold.
	AlertLowStock AlertType = 0
	// AlertExpirySoon: the leader's clock passed expires_at minus the
	// list's warning days while it still had codes available.
	AlertExpirySoon AlertType = 1
)

func (t AlertType) String() string {
	if t == AlertExpirySoon {
		return "expiry_soon"
	}
	return "low_stock"
}

// Alert is one event waiting in the outbox.
type Alert struct {
	ID        uint64 // 1, 2, 3, ... in the order they were recorded; never reused
	Tenant    string
	List      uint64
	ListName  string
	Threshold uint64
	Available uint64 // what the list had available when it was recorded
	At        int64  // unix ns: the command's leader-stamped time (see applier.at)
	Type      AlertType
	ExpiresAt int64 // the list's expires_at, for expiry_soon
}

// alertVersion 2 adds the type and expires_at; a low-stock alert is
// written as version 1, byte for byte as before.
const alertVersion = 2

func (a *Alert) marshal() []byte {
	v := byte(recordVersion)
	if a.Type != AlertLowStock {
		v = alertVersion
	}
	b := []byte{v}
	b = binary.AppendUvarint(b, a.ID)
	b = appendString(b, a.Tenant)
	b = binary.AppendUvarint(b, a.List)
	b = appendString(b, a.ListName)
	b = binary.AppendUvarint(b, a.Threshold)
	b = binary.AppendUvarint(b, a.Available)
	b = appendVarint(b, a.At)
	if v == alertVersion {
		b = append(b, byte(a.Type))
		b = appendVarint(b, a.ExpiresAt)
	}
	return b
}

func unmarshalAlert(v []byte) (*Alert, error) {
	if len(v) == 0 || v[0] < recordVersion || v[0] > alertVersion {
		return nil, fmt.Errorf("alert record of unknown version: %w", errCorrupt)
	}
	d := &decoder{b: v[1:], version: v[0]}
	a := &Alert{ID: d.uvarint("ID"), Tenant: d.string("Tenant"), List: d.uvarint("List"), ListName: d.string("ListName"),
		Threshold: d.uvarint("Threshold"), Available: d.uvarint("Available"), At: d.varint("At")}
	if d.version >= 2 {
		a.Type, a.ExpiresAt = AlertType(d.byte("Type")), d.varint("ExpiresAt")
		if d.err == nil && a.Type != AlertExpirySoon {
			d.fail("Type", "not expiry_soon in version 2")
		}
	}
	return a, d.done()
}

// MaxAckAlerts bounds the ids of one AckAlerts command.
const MaxAckAlerts = 1024

// AckAlerts removes the alerts with these ids from the outbox; ids that are
// not pending (acknowledged already, dropped) are ignored, so a repeated
// acknowledgement is harmless. Its Response value is the number removed.
type AckAlerts struct{ IDs []uint64 }

func (*AckAlerts) Type() CmdType { return CmdAckAlerts }
func (c *AckAlerts) appendBody(b []byte) []byte {
	if len(c.IDs) > MaxAckAlerts {
		panic("BUG: too many alert ids in one AckAlerts")
	}
	b = binary.AppendUvarint(b, uint64(len(c.IDs)))
	for _, id := range c.IDs {
		b = binary.AppendUvarint(b, id)
	}
	return b
}
func (c *AckAlerts) decodeBody(d *decoder) {
	n := d.count("IDs", MaxAckAlerts)
	if d.err != nil {
		return
	}
	c.IDs = make([]uint64, n)
	for i := range c.IDs {
		c.IDs[i] = d.uvarint("IDs")
	}
}
func (*AckAlerts) at(entryAt int64) int64 { return entryAt }

// apply answers the number of alerts removed.
func (c *AckAlerts) apply(a *applier) (any, error) {
	f := a.f
	f.mu.RLock()
	pending := f.alerts
	f.mu.RUnlock()
	acked := make(map[uint64]bool, len(c.IDs))
	for _, id := range c.IDs {
		acked[id] = true
	}
	next := make([]*Alert, 0, len(pending))
	for _, p := range pending { // in id order: the outcome never depends on map order
		if acked[p.ID] {
			a.del(alertKey(p.ID))
			continue
		}
		next = append(next, p)
	}
	removed := len(pending) - len(next)
	if removed > 0 {
		f.mu.Lock()
		f.alerts = next
		f.mu.Unlock()
	}
	return removed, nil
}

// keyAlertSeq holds the id of the last alert recorded (8 bytes BE), so ids
// are never reused after the outbox empties.
// Changing this key breaks existing data folders.
var keyAlertSeq = []byte{prefixMeta, 'o'}

func alertKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixAlert}, id)
}

// lowStock is the flag of SPEC §1 on a published meta's counts.
func (l *ListMeta) lowStock() bool {
	if l.Threshold == 0 {
		return false
	}
	return l.available() < l.Threshold
}

// available is what readers see as the list's available count.
func (l *ListMeta) available() uint64 {
	if l.counts.available < l.Reserved {
		return 0
	}
	return l.counts.available - l.Reserved
}

// checkLowStock records an alert when publishing l (over old, the meta
// readers saw until now) turns low_stock from false to true.
func (a *applier) checkLowStock(old, l *ListMeta) {
	if old == nil || old.lowStock() || !l.lowStock() {
		return
	}
	a.recordAlert(&Alert{Tenant: l.Tenant, List: l.ID, ListName: l.Name, Threshold: l.Threshold,
		Available: l.available(), At: a.at})
}

// recordAlert puts al in the outbox under the next id.
func (a *applier) recordAlert(al *Alert) {
	f := a.f
	f.mu.RLock()
	pending := f.alerts
	seq := f.alertSeq
	f.mu.RUnlock()
	seq++
	al.ID = seq
	next := make([]*Alert, 0, min(len(pending)+1, MaxPendingAlerts))
	if len(pending) >= MaxPendingAlerts {
		drop := 0 // the oldest of all, unless the list has one of the same type pending
		for i, p := range pending {
			if p.List == al.List && p.Type == al.Type {
				drop = i
				break
			}
		}
		a.del(alertKey(pending[drop].ID))
		next = append(next, pending[:drop]...)
		next = append(next, pending[drop+1:]...)
	} else {
		next = append(next, pending...)
	}
	next = append(next, al)
	a.set(alertKey(al.ID), al.marshal())
	a.set(keyAlertSeq, binary.BigEndian.AppendUint64(nil, seq))
	f.mu.Lock()
	f.alerts, f.alertSeq = next, seq
	f.mu.Unlock()
	f.notifyAlerts()
}

// notifyAlerts wakes the reader of AlertsChanged without ever blocking.
func (f *FSM) notifyAlerts() {
	select {
	case f.alertsChanged <- struct{}{}:
	default:
	}
}

// AlertsChanged receives a value (coalesced) after an apply or a restore
// that added alerts to the outbox. It has one reader: the leader's delivery loop.
func (f *FSM) AlertsChanged() <-chan struct{} { return f.alertsChanged }

// PendingAlerts returns the outbox, oldest first (by id). The alerts are
// copies the caller may keep.
func (f *FSM) PendingAlerts() []Alert {
	f.mu.RLock()
	pending := f.alerts
	f.mu.RUnlock()
	out := make([]Alert, len(pending))
	for i, p := range pending {
		out[i] = *p
	}
	return out
}

// LastAlertID is the id of the last alert ever recorded (0 if none).
func (f *FSM) LastAlertID() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.alertSeq
}

func (s *state) loadAlertSeq(_, v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("alert sequence of %d bytes: %w", len(v), errCorrupt)
	}
	s.alertSeq = binary.BigEndian.Uint64(v)
	return nil
}

// loadAlert comes after loadAlertSeq: no alert is above the sequence.
func (s *state) loadAlert(k, v []byte) error {
	al, err := unmarshalAlert(v)
	switch {
	case err != nil:
		return fmt.Errorf("alert: %w", err)
	case al.ID != binary.BigEndian.Uint64(k[1:]):
		return fmt.Errorf("alert %d under the key of %d: %w", al.ID, binary.BigEndian.Uint64(k[1:]), errCorrupt)
	case al.ID > s.alertSeq:
		return fmt.Errorf("alert %d above the alert sequence %d: %w", al.ID, s.alertSeq, errCorrupt)
	}
	s.alerts = append(s.alerts, al)
	return nil
}
