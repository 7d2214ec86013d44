$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
# shutdown.exe returns at once and restarts after the delay, so this command ends cleanly before
# the WinRM service goes away; /d p:2:17 records a planned reboot for a hotfix in the event log.
& shutdown.exe /r /t ([int]$request.delay) /c ([string]$request.reason) /d p:2:17
exit $LASTEXITCODE
