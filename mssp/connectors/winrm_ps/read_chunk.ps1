$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$stream = [System.IO.File]::OpenRead($request.path)
try {
    $null = $stream.Seek([long]$request.offset, [System.IO.SeekOrigin]::Begin)
    $buffer = New-Object byte[] ([int]$request.length)
    $count = $stream.Read($buffer, 0, $buffer.Length)
    [Console]::Out.Write([Convert]::ToBase64String($buffer, 0, $count))
} finally {
    $stream.Dispose()
}
