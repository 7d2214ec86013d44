from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_backups')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RelayEndpoint',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('url', fields.CharField(max_length=255)),
                ('pin', fields.CharField(description="sha256:<hex> of the relay's DER certificate (relay/tls.py)", max_length=80)),
                ('core_credential', fields.ForeignKeyField('models.Credential', source_field='core_credential_id', null=True, description="the vault credential holding the core's Ed25519 key for the relay", db_constraint=True, to_field='id', related_name='relay_endpoints', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'relay_endpoint', 'app': 'models', 'pk_attr': 'id', 'table_description': "The relay this core dials (one row): its URL, its certificate pin and the core's key."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SiteAgent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('site', fields.OneToOneField('models.Site', source_field='site_id', db_constraint=True, to_field='id', related_name='agent', on_delete=OnDelete.CASCADE)),
                ('relay_site_id', fields.CharField(unique=True, description='what the relay knows the site as: random, so the relay never learns client or site names', max_length=64)),
                ('binding_credential', fields.ForeignKeyField('models.Credential', source_field='binding_credential_id', null=True, description="the vault credential holding this enrolment's binding secret", db_constraint=True, to_field='id', related_name='site_agents', on_delete=OnDelete.SET_NULL)),
                ('agent_key', fields.TextField(default='', description='the agent\'s host key, pinned once its proof verified ("" until the agent has joined)', unique=False)),
                ('token_issued_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('token_expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('joined_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('online', fields.BooleanField(default=False, description='the last presence seen from the relay')),
                ('online_since', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_seen', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('rtt_ms', fields.FloatField(null=True)),
                ('presence_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'site_agent', 'app': 'models', 'pk_attr': 'id', 'table_description': "One site's agent: enrolment, the pinned agent host key, revocation and last presence."},
            bases=['Model'],
        ),
    ]
