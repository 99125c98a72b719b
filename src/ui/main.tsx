import { render } from 'preact';
import { App, applyTheme, initialTheme } from './app.tsx';
import { installCopyHandler } from './widgets.tsx';

applyTheme(initialTheme());
installCopyHandler();
const root = document.getElementById('app');
if (root) render(<App />, root);
