"""Remote sessions: interactive shells and PowerShell, file transfer, port forwards, recordings."""
