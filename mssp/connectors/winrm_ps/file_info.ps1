$ErrorActionPreference = 'Stop'
$request = [Console]::In.ReadToEnd() | ConvertFrom-Json
$size = (Get-Item -LiteralPath $request.path).Length
$hash = Get-FileHash -LiteralPath $request.path -Algorithm SHA256
[Console]::Out.Write((@{ sha256 = $hash.Hash.ToLower(); size = $size } | ConvertTo-Json -Compress))
