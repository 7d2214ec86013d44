from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_audit')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Incident',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(description='stable identity of the problem, e.g. "backup:acme/main/fs01"', max_length=255)),
                ('client', fields.CharField(default='', max_length=64)),
                ('kind', fields.CharField(description='backup, run, agent, ...', max_length=32)),
                ('subject', fields.TextField(unique=False)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('open_delivery', fields.TextField(default='', description='delivery results as text for the history ("sent to 2 of 2 targets")', unique=False)),
                ('close_delivery', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'incident', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A problem that was (or is) announced: a backup not VERIFIED, a failed run, an agent down.'},
            bases=['Model'],
        ),
    ]
