$ids = & $exe --no-lock list index 2>&1 | ForEach-Object { "$_" }
if ($LASTEXITCODE -ne 0) { [Console]::Out.Write(($ids -join "`n")); exit $LASTEXITCODE }
foreach ($id in $ids) {
    $doc = & $exe --no-lock cat index $id 2>&1 | ForEach-Object { "$_" }
    if ($LASTEXITCODE -ne 0) { [Console]::Out.Write(($doc -join "`n")); exit $LASTEXITCODE }
    [Console]::Out.Write(($doc -join "`n") + "`n")
}
exit 0
