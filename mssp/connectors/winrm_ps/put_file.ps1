$ErrorActionPreference = 'Stop'
$reader = [Console]::In
$path = ($reader.ReadLine() | ConvertFrom-Json).path
$stream = [System.IO.File]::Create($path)
try {
    while ($null -ne ($line = $reader.ReadLine())) {
        if ($line.Length -eq 0) { continue }
        $bytes = [Convert]::FromBase64String($line)
        $stream.Write($bytes, 0, $bytes.Length)
    }
} finally {
    $stream.Dispose()
}
$hash = Get-FileHash -LiteralPath $path -Algorithm SHA256
$size = (Get-Item -LiteralPath $path).Length
[Console]::Out.Write((@{ sha256 = $hash.Hash.ToLower(); size = $size } | ConvertTo-Json -Compress))
