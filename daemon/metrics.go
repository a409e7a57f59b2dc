package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Process-wide counters that are not read off a component.
var (
	jobRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_job_restarts_total", Help: "Times the pipeline was restarted after a failure."})
	brokenCheckpoints = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eddy_checkpoints_broken_total", Help: "Checkpoints that failed verification and were renamed .broken."})
	restoreSeconds = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eddy_restore_duration_seconds", Help: "Time the last restore took, from finding the checkpoint to a built job."})
)

// registry collects eddy's metrics, read from the running components at
// scrape time.
func (d *Daemon) registry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.MustRegister(jobRestarts, brokenCheckpoints, restoreSeconds)
	r.MustRegister(&collector{d: d})
	return r
}

var (
	descRecordsIn   = prometheus.NewDesc("eddy_task_records_in_total", "Records a task received.", []string{"task"}, nil)
	descRecordsOut  = prometheus.NewDesc("eddy_task_records_out_total", "Records a task emitted.", []string{"task"}, nil)
	descBackPress   = prometheus.NewDesc("eddy_task_back_pressured_seconds_total", "Time a task waited on a full output channel.", []string{"task"}, nil)
	descWatermark   = prometheus.NewDesc("eddy_task_watermark_milliseconds", "Current event-time watermark of a task.", []string{"task"}, nil)
	descDeadLetters = prometheus.NewDesc("eddy_task_dead_letters_total", "Readings a task could not process.", []string{"task"}, nil)
	descLate        = prometheus.NewDesc("eddy_task_late_events_total", "Events dropped as later than the allowed lateness.", []string{"task"}, nil)
	descLogSize     = prometheus.NewDesc("eddy_ingest_log_size_bytes", "Bytes held by a source's ingest log.", []string{"source"}, nil)
	descLogLag      = prometheus.NewDesc("eddy_ingest_log_lag_messages", "Messages in the ingest log not yet read by the pipeline.", []string{"source"}, nil)
	descLogFull     = prometheus.NewDesc("eddy_ingest_log_full", "1 while the ingest log is full and messages wait at the broker.", []string{"source"}, nil)
	descConnected   = prometheus.NewDesc("eddy_mqtt_connected", "1 while the source's MQTT client is connected.", []string{"source"}, nil)
)

type collector struct{ d *Daemon }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRecordsIn, descRecordsOut, descBackPress, descWatermark,
		descDeadLetters, descLate, descLogSize, descLogLag, descLogFull, descConnected} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	o := c.d.overview()
	for _, t := range o.Tasks {
		ch <- prometheus.MustNewConstMetric(descRecordsIn, prometheus.CounterValue, float64(t.RecordsIn), t.Name)
		ch <- prometheus.MustNewConstMetric(descRecordsOut, prometheus.CounterValue, float64(t.RecordsOut), t.Name)
		ch <- prometheus.MustNewConstMetric(descBackPress, prometheus.CounterValue, float64(t.BackPressuredMs)/1000, t.Name)
		if t.Watermark != nil {
			ch <- prometheus.MustNewConstMetric(descWatermark, prometheus.GaugeValue, float64(*t.Watermark), t.Name)
		}
		ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.CounterValue, float64(t.DeadLetters), t.Name)
		ch <- prometheus.MustNewConstMetric(descLate, prometheus.CounterValue, float64(t.LateEvents), t.Name)
	}
	for _, in := range o.Ingest {
		ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(in.SizeBytes), in.Source)
		ch <- prometheus.MustNewConstMetric(descLogLag, prometheus.GaugeValue, float64(in.Lag), in.Source)
		ch <- prometheus.MustNewConstMetric(descLogFull, prometheus.GaugeValue, b2f(in.Full), in.Source)
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b2f(in.Connected), in.Source)
	}
}
