$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$scriptArgs = @($request.args | ForEach-Object { [string]$_ })
$code = 0
try {
    # Splatting passes each argument as one value: PowerShell never parses them as code.
    & ([string]$request.path) @scriptArgs
    if ($null -ne $LASTEXITCODE) { $code = $LASTEXITCODE }
    if (-not $?) { $code = 1 }
} finally {
    Remove-Item -LiteralPath ([string]$request.path) -Force -ErrorAction SilentlyContinue
}
exit $code
