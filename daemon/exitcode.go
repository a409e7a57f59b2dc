package daemon

// ExitConfigInvalid is the exit status of `eddy run` and `eddy validate`
// when the configuration file does not load or does not validate:
// EX_CONFIG (78) of sysexits.h. The systemd unit lists it in
// RestartPreventExitStatus=, so a bad file is not restarted in a loop.
const ExitConfigInvalid = 78

// ExitStateIncompatible is the exit status of `eddy run` when the state
// to restore does not fit the configured pipeline
// (*pipeline.IncompatibleStateError): EX_DATAERR (65) of sysexits.h.
// Restarting cannot help, so the systemd unit lists it in
// RestartPreventExitStatus= too.
const ExitStateIncompatible = 65
