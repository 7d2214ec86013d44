from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('seq', fields.IntField(unique=True)),
                ('at', fields.CharField(description='ISO 8601 UTC time with microseconds, kept as text so the canonical form is byte-stable', max_length=40)),
                ('actor', fields.CharField(max_length=128)),
                ('action', fields.CharField(max_length=64)),
                ('client', fields.CharField(default='', max_length=64)),
                ('target', fields.TextField(default='', unique=False)),
                ('detail', fields.TextField(default='{}', description='canonical JSON text (sorted keys), never a secret', unique=False)),
                ('result', fields.CharField(description='ok, failed, refused, intent, ...', max_length=32)),
                ('intent_seq', fields.IntField(null=True, description='for an outcome entry: the seq of the intent it completes')),
                ('prev_hash', fields.CharField(max_length=64)),
                ('hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'audit_entry', 'app': 'models', 'pk_attr': 'id', 'table_description': "One privileged action. ``hash`` covers ``prev_hash`` and the entry's canonical form."},
            bases=['Model'],
        ),
    ]
