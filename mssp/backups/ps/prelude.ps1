$ErrorActionPreference = 'Continue'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$exe = [string]$request.restic
if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { [Console]::Out.Write('restic: not found'); exit 127 }
