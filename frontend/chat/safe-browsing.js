import { initI18n } from '../common/i18n.js';
import { initQuickExit } from '../common/quick-exit.js';

initQuickExit();
initI18n().catch((e) => console.error(e));
