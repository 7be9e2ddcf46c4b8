package ingest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
)

// Every column ingest writes reads back as the decoder produced it: the
// typed blocks map each event.Span / event.AuditEvent field to its column,
// so a field appended to the wrong column, or dropped, fails here.
func TestTypedBlocksRoundTripEveryColumn(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)

	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "planner")
	rs.Resource().Attributes().PutStr("tenant.id", "acme")
	rs.Resource().Attributes().PutStr("host.name", "ip-10-0-0-1")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("agent.sdk")
	ss.Scope().SetVersion("1.2.3")
	ss.Scope().Attributes().PutStr("scope.k", "v")
	sp := ss.Spans().AppendEmpty()
	sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	sp.SetSpanID(pcommon.SpanID{1, 1, 1, 1, 2, 2, 2, 2})
	sp.SetParentSpanID(pcommon.SpanID{3, 3, 3, 3, 4, 4, 4, 4})
	sp.TraceState().FromRaw("vendor=x")
	sp.SetName("chat gpt-5")
	sp.SetKind(ptrace.SpanKindClient)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(1500 * time.Millisecond)))
	sp.Status().SetCode(ptrace.StatusCodeError)
	sp.Status().SetMessage("rate limited")
	a := sp.Attributes()
	a.PutStr("gen_ai.operation.name", "chat")
	a.PutStr("gen_ai.provider.name", "openai")
	a.PutStr("gen_ai.agent.id", "agent-1")
	a.PutStr("gen_ai.agent.name", "Planner")
	a.PutStr("gen_ai.agent.version", "7")
	a.PutStr("gen_ai.request.model", "gpt-5")
	a.PutStr("gen_ai.response.model", "gpt-5-2026")
	a.PutStr("gen_ai.response.id", "chatcmpl-1")
	a.PutStr("gen_ai.conversation.id", "conv-9")
	fr := a.PutEmptySlice("gen_ai.response.finish_reasons")
	fr.AppendEmpty().SetStr("stop")
	fr.AppendEmpty().SetStr("length")
	a.PutInt("gen_ai.usage.input_tokens", 120)
	a.PutInt("gen_ai.usage.output_tokens", 45)
	a.PutInt("gen_ai.usage.cache_read.input_tokens", 20)
	a.PutInt("gen_ai.usage.cache_creation.input_tokens", 10)
	a.PutInt("gen_ai.usage.reasoning.output_tokens", 5)
	a.PutStr("error.type", "429")
	a.PutStr("custom.key", "custom value")
	a.PutStr("another", "x")
	ev := sp.Events().AppendEmpty()
	ev.SetName("gen_ai.choice")
	ev.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Second)))
	ev.Attributes().PutStr("index", "0")
	ev.Attributes().PutStr("b", "1")
	ev2 := sp.Events().AppendEmpty()
	ev2.SetName("exception")
	ev2.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(1200 * time.Millisecond)))
	ln := sp.Links().AppendEmpty()
	ln.SetTraceID(pcommon.TraceID{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9})
	ln.SetSpanID(pcommon.SpanID{8, 8, 8, 8, 8, 8, 8, 8})
	ln.TraceState().FromRaw("k=v")
	ln.Attributes().PutStr("link.kind", "follows")
	sp.SetDroppedAttributesCount(2)
	sp.SetDroppedEventsCount(3)
	sp.SetDroppedLinksCount(4)
	tool := ss.Spans().AppendEmpty()
	tool.SetTraceID(sp.TraceID())
	tool.SetSpanID(pcommon.SpanID{5, 5, 5, 5, 5, 5, 5, 5})
	tool.SetParentSpanID(sp.SpanID())
	tool.SetName("execute_tool crm.lookup")
	tool.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	tool.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	tool.Attributes().PutStr("gen_ai.operation.name", "execute_tool")
	tool.Attributes().PutStr("gen_ai.tool.name", "crm.lookup")
	tool.Attributes().PutStr("gen_ai.tool.call.id", "call-1")
	tool.Attributes().PutStr("gen_ai.tool.type", "function")
	tool.Attributes().PutStr("gen_ai.tool.call.arguments", `{"id":42}`)
	tool.Attributes().PutStr("gen_ai.tool.call.result", `{"name":"x"}`)
	msg, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}

	want, _, err := event.DecodeSpans(msg, event.EncodingProto, e.cfg.Spans, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newSpanCodec(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := newEventCodec(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	evMsg := testEvent(7, "acme", now)
	wantEv, err := ec.dec.Decode(evMsg)
	if err != nil {
		t.Fatal(err)
	}
	ins := chstore.NewInserter(e.target())
	defer ins.Close()
	for _, c := range []codec{sc, ec} {
		m := testMessage(msg, 3, 17)
		if c == codec(ec) {
			m = testMessage(evMsg, 3, 18)
		}
		if _, err := c.appendTo(m, nil); err != nil {
			t.Fatal(err)
		}
		if err := ins.Insert(ctx, c.table(), c.columns().input, ""); err != nil {
			t.Fatal(err)
		}
	}

	for i := range want {
		want[i].SrcPartition, want[i].SrcOffset = 3, 17
	}
	var got []event.Span
	if err := e.conn.Select(ctx, &got, "SELECT "+columnList(event.Span{})+" FROM spans ORDER BY src_index"); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d spans, want %d", len(got), len(want))
	}
	for i := range want {
		if d := diffFields(normalize(want[i]), normalize(got[i])); d != "" {
			t.Errorf("span %d differs after the round trip:\n%s", i, d)
		}
	}
	wantEv.SrcPartition, wantEv.SrcOffset = 3, 18
	var gotEv []event.AuditEvent
	if err := e.conn.Select(ctx, &gotEv, "SELECT "+columnList(event.AuditEvent{})+" FROM audit_events"); err != nil {
		t.Fatal(err)
	}
	if len(gotEv) != 1 {
		t.Fatalf("read %d events", len(gotEv))
	}
	if d := diffFields(normalize(wantEv), normalize(gotEv[0])); d != "" {
		t.Errorf("event differs after the round trip:\n%s", d)
	}
}

// columnList is the ch tags of a row struct, comma-separated.
func columnList(row any) string {
	var cols []string
	rt := reflect.TypeOf(row)
	for i := range rt.NumField() {
		if tag := rt.Field(i).Tag.Get("ch"); tag != "" {
			cols = append(cols, tag)
		}
	}
	return strings.Join(cols, ", ")
}

// normalize makes nil and empty slices and maps equal and times UTC.
func normalize[T any](row T) T {
	v := reflect.ValueOf(&row).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Slice, reflect.Map:
			if f.Len() == 0 {
				f.Set(reflect.Zero(f.Type()))
			}
			if f.Kind() == reflect.Slice {
				for j := range f.Len() {
					el := f.Index(j)
					if el.Kind() == reflect.Map && el.Len() == 0 {
						el.Set(reflect.Zero(el.Type()))
					}
					if tm, ok := el.Interface().(time.Time); ok {
						el.Set(reflect.ValueOf(tm.UTC()))
					}
				}
			}
		case reflect.Struct:
			if tm, ok := f.Interface().(time.Time); ok {
				f.Set(reflect.ValueOf(tm.UTC()))
			}
		}
	}
	return row
}

func diffFields[T any](want, got T) string {
	var b strings.Builder
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := range wv.NumField() {
		if !reflect.DeepEqual(wv.Field(i).Interface(), gv.Field(i).Interface()) {
			b.WriteString("  " + wv.Type().Field(i).Name + ": want " + fmtValue(wv.Field(i)) + ", got " + fmtValue(gv.Field(i)) + "\n")
		}
	}
	return b.String()
}

func fmtValue(v reflect.Value) string {
	return strings.TrimSpace(strings.ReplaceAll(fmtAny(v.Interface()), "\n", " "))
}

func fmtAny(v any) string { return fmt.Sprintf("%#v", v) }

func testMessage(value []byte, partition int, offset int64) kafka.Message {
	return kafka.Message{Topic: "t", Partition: partition, Offset: offset, Value: value}
}
