package pipeline

import (
	"fmt"
	"strings"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// checkSchemas compares the state schemas of the restored checkpoint with
// the job's (Compare), logs what happens to every stage, and refuses the
// restore with *IncompatibleStateError when a stage is refused. A
// checkpoint without schemas (taken before they were recorded) restores
// its stages by name, unchecked, as eddy did before.
func (j *Job) checkSchemas() error {
	md := j.spec.Restore
	old := md.Schemas
	if old == nil {
		j.log.Warn("checkpoint records no state schema (taken before schemas were recorded): "+
			"its stages are restored by name, unchecked", "checkpoint", md.ID)
		old = legacySchemas(md, j.schemas)
	}
	j.outcomes = map[string]StageOutcome{}
	var refused []StageOutcome
	byUID := map[string]*StageSchema{}
	for i := range old {
		byUID[old[i].UID] = &old[i]
	}
	for _, o := range Compare(old, j.schemas, j.spec.AllowNonRestoredState) {
		if o.Stage != "" {
			j.outcomes[o.Stage] = o
		}
		if o.Outcome == OutcomeRestore || o.Outcome == OutcomeMigrate {
			if prev, cur := byUID[o.UID], j.schemaOf(o.Stage); prev != nil && cur != nil {
				migrateSchema(prev, cur) // the layouts the restored values carry
			}
		}
		args := []any{"checkpoint", md.ID, "uid", o.UID, "stage", o.Stage, "outcome", string(o.Outcome)}
		if len(o.Changes) > 0 {
			args = append(args, "changes", strings.Join(o.Changes, "; "))
		}
		switch o.Outcome {
		case OutcomeRefuse:
			refused = append(refused, o)
			j.log.Error("state restore refused: "+o.Reason, args...)
		case OutcomeEmpty:
			j.log.Info("stage is new in the configuration: it starts with empty state", args...)
		case OutcomeDropped:
			j.log.Warn("stage has state but is not in the configuration: its state, and the output it staged, are dropped (allow_non_restored_state)",
				append(args, "old_stage", o.OldStage)...)
		case OutcomeMigrate:
			j.log.Info("stage state restored with a compatible change", args...)
		default:
			j.log.Debug("stage state restored", args...)
		}
	}
	if len(refused) > 0 {
		return &IncompatibleStateError{Checkpoint: md.ID, Refused: refused}
	}
	return nil
}

// legacySchemas stands in for the schemas of a checkpoint that records
// none: a configured stage with task state under its name gets its current
// schema (restored unchecked, as before schemas); any other stage with
// state gets a schema that matches no configured stage.
func legacySchemas(md *checkpoint.Metadata, cur []StageSchema) []StageSchema {
	byName := map[string]StageSchema{}
	for _, s := range cur {
		byName[s.Stage] = s
	}
	seen := map[string]bool{}
	var out []StageSchema
	for _, ts := range md.Tasks {
		if ts.Kind == checkpoint.KindNone || seen[ts.Stage] {
			continue
		}
		seen[ts.Stage] = true
		s, ok := byName[ts.Stage]
		if !ok {
			s = StageSchema{UID: ts.Stage, Stage: ts.Stage}
		}
		out = append(out, s)
	}
	return out
}

// oldStage returns the name the configured stage's state has in the
// restored checkpoint; false when the stage starts empty.
func (j *Job) oldStage(stage string) (string, bool) {
	o, ok := j.outcomes[stage]
	if !ok || o.OldStage == "" || o.Outcome == OutcomeRefuse {
		return "", false
	}
	return o.OldStage, true
}

// renameRestored moves the restored task snapshots of stages that have
// another name in the checkpoint to their configured task names.
func (j *Job) renameRestored(old map[string]*taskSnapshot) {
	for i := range j.spec.Stages {
		s := &j.spec.Stages[i]
		was, ok := j.oldStage(s.Name)
		if !s.Keyed() || !ok || was == s.Name {
			continue
		}
		for k := range j.spec.Parallelism {
			from, to := fmt.Sprintf("%s-%d", was, k), fmt.Sprintf("%s-%d", s.Name, k)
			old[to] = old[from]
			delete(old, from)
		}
	}
}
