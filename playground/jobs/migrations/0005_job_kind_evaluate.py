from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_job_kind_pull_import"),
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
                    ("evaluate", "Evaluation run"),
                    ("pull", "Pull"),
                    ("import", "Import"),
                ],
                max_length=20,
            ),
        ),
    ]
