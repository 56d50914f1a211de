package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coupond/coupond/httpapi/client"
)

// emit prints v as indented JSON with --json, else what human writes,
// aligned in columns.
func (x *cmdCtx) emit(v any, human func(w io.Writer)) error {
	if x.json {
		enc := json.NewEncoder(x.env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("cannot write the output: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(x.env.stdout, 0, 4, 2, ' ', 0)
	human(tw)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("cannot write the output: %w", err)
	}
	return nil
}

// table writes a header and n rows.
func table(w io.Writer, header []string, n int, row func(i int) []string) {
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for i := range n {
		fmt.Fprintln(w, strings.Join(row(i), "\t"))
	}
}

// fields writes key, value pairs one per line.
func fields(w io.Writer, kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(w, "%s:\t%s\n", kv[i], kv[i+1])
	}
}

func listTable(w io.Writer, ls []client.List) {
	table(w, []string{"ID", "NAME", "ADDED", "AVAILABLE", "RESERVED", "USED", "WITHDRAWN", "LOW STOCK"}, len(ls), func(i int) []string {
		l := ls[i]
		low := ""
		if l.LowStock {
			low = "yes"
		}
		return []string{l.ID, l.Name, num(l.Added), num(l.Available), num(l.Reserved), num(l.Used), num(l.Withdrawn), low}
	})
}

func messageFields(w io.Writer, m *client.Message) {
	list := "none"
	if m.CouponListID != nil {
		list = *m.CouponListID
	}
	fields(w, "id", m.ID, "name", m.Name, "campaign", m.Campaign, "campaign type", m.CampaignType,
		"channel", m.Channel, "doi", yesNo(m.DOI), "status", m.Status, "coupon list", list)
}

func sendFields(w io.Writer, s *client.Send) {
	fields(w, "send", s.SendID, "message", s.MessageID, "list", s.ListID, "status", s.Status,
		"reserved", num(s.Reserved), "assigned", num(s.Assigned), "on shortage", s.OnShortage, "created", stamp(s.CreatedAt))
}

func num(v uint64) string { return strconv.FormatUint(v, 10) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
