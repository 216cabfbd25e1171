from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_job_kind_accelerate"),
    ]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(
                choices=[
                    ("finetune", "Fine-tune"),
                    ("quantize", "Quantize"),
                    ("accelerate", "Accelerate experiment"),
                    ("pull", "Pull"),
                    ("import", "Import"),
                ],
                max_length=20,
            ),
        ),
    ]
