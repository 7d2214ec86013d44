$scratch = Join-Path ([System.IO.Path]::GetTempPath()) ('mssp-verify-' + [guid]::NewGuid().ToString('N'))
$null = New-Item -ItemType Directory -Path $scratch
function Hash($p) { (Get-FileHash -Algorithm SHA256 -LiteralPath $p).Hash.ToLower() }
function Native($p) { $p.Substring(1, 1) + ':' + $p.Substring(2).Replace('/', '\') }
$arguments = @('--no-lock', 'restore', [string]$request.snapshot, '--target', $scratch)
foreach ($f in $request.files) { $arguments += @('--include', [string]$f) }
$start = Get-Date
$log = & $exe @arguments 2>&1 | ForEach-Object { "$_" }
$restoreExit = $LASTEXITCODE
$elapsed = ((Get-Date) - $start).TotalSeconds
$files = @()
foreach ($f in $request.files) {
    $item = @{ restored_size = $null; restored_sha256 = ''; live_size = $null; live_mtime = $null; live_sha256 = ''; dump_sha256 = '' }
    $copy = Join-Path $scratch ([string]$f).Substring(1).Replace('/', '\')
    if (Test-Path -LiteralPath $copy -PathType Leaf) { $item.restored_size = (Get-Item -LiteralPath $copy).Length; $item.restored_sha256 = Hash $copy }
    $live = Native ([string]$f)
    if (Test-Path -LiteralPath $live -PathType Leaf) {
        $info = Get-Item -LiteralPath $live
        $item.live_size = $info.Length
        $item.live_mtime = [int64][Math]::Floor(($info.LastWriteTimeUtc - [datetime]'1970-01-01').TotalSeconds)
        $item.live_sha256 = Hash $live
    }
    $dump = Join-Path $scratch '.mssp-dump'
    & $exe --no-lock dump ([string]$request.snapshot) ([string]$f) > $dump 2>$null
    if ($LASTEXITCODE -eq 0) { $item.dump_sha256 = Hash $dump }
    $files += $item
}
Remove-Item -Recurse -Force -LiteralPath $scratch -ErrorAction SilentlyContinue
$result = @{ restore_exit = $restoreExit; duration = $elapsed; files = $files; scratch_removed = -not (Test-Path -LiteralPath $scratch); log = ($log -join "`n") }
[Console]::Out.Write(($result | ConvertTo-Json -Compress -Depth 4))
exit 0
