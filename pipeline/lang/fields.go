package lang

// The fields every window result carries besides its key fields and
// aggregates, as rendered in its JSON and usable (all but id, firing and
// partial) as topic placeholders.
const (
	FieldID          = "id"           // stable result id
	FieldStage       = "stage"        // the window stage's name
	FieldWindowStart = "window_start" // unix ms, inclusive
	FieldWindowEnd   = "window_end"   // unix ms, exclusive
	FieldFiring      = "firing"       // 1 for the on-time firing, 2.. for late updates
	FieldPartial     = "partial"      // aggregates that did not see the whole window; absent when all did
)

// ResultFields are the reserved field names of a window result: no key field
// or aggregate may reuse them.
var ResultFields = []string{FieldID, FieldStage, FieldWindowStart, FieldWindowEnd, FieldFiring, FieldPartial}

// TemplateFields are the placeholders a topic template may use besides the
// stage's key fields and aggregates.
var TemplateFields = []string{FieldWindowStart, FieldWindowEnd, FieldStage}
