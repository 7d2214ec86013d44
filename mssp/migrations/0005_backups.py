from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_sessions')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BackupCheck',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('host_name', fields.CharField(db_index=True, description='full inventory name client/site/host (kept if the host is deleted: this is history)', max_length=255)),
                ('client_slug', fields.CharField(db_index=True, max_length=64)),
                ('state', fields.CharField(description='VERIFIED, STALE, CORRUPT, UNVERIFIABLE, NOT_RUN', max_length=16)),
                ('reason', fields.TextField(default='', unique=False)),
                ('evidence', fields.JSONField(default=dict, description='mssp.backups.evidence.Evidence as JSON ({} when the host could not be reached)', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('checked_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('run_id', fields.IntField(null=True, description='the run and host run it came from (no foreign keys: deleting runs keeps the history)')),
                ('host_run_id', fields.IntField(null=True, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'backup_check', 'app': 'models', 'pk_attr': 'id', 'table_description': "One verification of one host's backup: the verdict and its evidence, kept as history."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Schedule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('cron', fields.CharField(max_length=128)),
                ('timezone', fields.CharField(default='UTC', max_length=64)),
                ('task', fields.CharField(max_length=64)),
                ('target', fields.TextField(unique=False)),
                ('params', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('options', fields.JSONField(default=dict, description='mssp.engine.RunOptions as JSON', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('enabled', fields.BooleanField(default=True)),
                ('last_planned', fields.DatetimeField(description="planned time of the last run started (or the creation time): the missed-run policy's anchor", auto_now=False, auto_now_add=False)),
                ('last_run_id', fields.IntField(null=True)),
                ('last_started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_late', fields.BooleanField(default=False, description='the last run started more than the grace period after its planned time')),
                ('last_missed', fields.IntField(default=0, description='planned times folded into the last run (a laptop asleep over several)')),
                ('last_error', fields.TextField(default='', unique=False)),
                ('running', fields.BooleanField(default=False, description='the lock: set while a run of this schedule is in flight, by the process that owns it')),
                ('running_owner', fields.CharField(default='', max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'schedule', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A task run on a cron schedule by `mssp daemon`.'},
            bases=['Model'],
        ),
    ]
