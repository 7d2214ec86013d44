from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_notify')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Recording',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('host_name', fields.CharField(description='full inventory name client/site/host', max_length=255)),
                ('client_slug', fields.CharField(default='', max_length=64)),
                ('actor', fields.CharField(default='', description='who ran the session (user@machine)', max_length=128)),
                ('kind', fields.CharField(default='ssh', description='"ssh" (PTY shell) or "powershell" (line-based WinRM prompt)', max_length=16)),
                ('command', fields.TextField(default='', description='the command run instead of a login shell ("" for a shell)', unique=False)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('path', fields.TextField(description='the asciicast v2 file (under settings.data_dir/recordings/)', unique=False)),
                ('sha256', fields.CharField(default='', description='SHA-256 of the file as written, also in the audit entry ("" while recording)', max_length=64)),
                ('bytes', fields.BigIntField(default=0)),
                ('exit_status', fields.IntField(null=True)),
                ('state', fields.CharField(default='recording', description='recording, finished, failed (the session could not run), incomplete (recording broke)', max_length=16)),
                ('audit_seq', fields.IntField(null=True, description='the audit entry that opened the session')),
                ('error', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'recording', 'app': 'models', 'pk_attr': 'id', 'table_description': "One interactive session's recording. The host is kept by name so it outlives the host."},
            bases=['Model'],
        ),
    ]
